package realise

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"storefs/store/derivation"
	"storefs/store/nar"
)

// Fixed outputs are copied into fresh inodes before they are checked.
//
// A fixed-output build has the host's network, so a process elsewhere may
// have been handed a descriptor of a file or directory of its output while
// it ran (the CVE-2024-27297 class; the sandbox refuses unix sockets to
// such builds, and this is the second wall). Through that descriptor the
// other process could change the output after its hash was checked, even
// after it was registered. So once every process of the build is gone
// (sandbox.Run has returned), each fixed output is copied, through its NAR,
// into new files that no process has ever seen, the original is removed,
// and only the copy is hashed, checked and registered: whatever a leaked
// descriptor writes afterwards goes to the removed original. Outputs of
// other builds are renamed as they are (they have their own network
// namespace and no way to reach another build).

// freshOutputs replaces each fixed output of d in outputs (id -> host path)
// with a copy in dir (which must exist, on the same filesystem) and
// removes the original. An output the builder did not make is left
// absent. A tree a NAR cannot hold (a fifo, a socket) is refused as the
// builder's fault, naming the output as the builder saw it (outName).
func freshOutputs(drvName string, d *derivation.Derivation, outputs map[string]string, dir string, outName func(id string) string) error {
	for _, id := range d.OutputIDs() {
		if !d.Outputs[id].IsFixed() {
			continue
		}
		orig := outputs[id]
		if _, err := os.Lstat(orig); err != nil {
			continue // checkOutputs says it is missing
		}
		fresh := filepath.Join(dir, filepath.Base(orig))
		dumpErr, err := copyThroughNAR(orig, fresh)
		if dumpErr != nil && !isResourceError(dumpErr) {
			msg := strings.ReplaceAll(dumpErr.Error(), orig, outName(id))
			return rejected(drvName, "output '%s': %s", id, msg)
		}
		if err == nil {
			err = dumpErr
		}
		if err != nil {
			return fmt.Errorf("copying fixed output %s of %s to fresh files at %s: %w", outName(id), drvName, fresh, err)
		}
		forceRemove(orig)
		outputs[id] = fresh
	}
	return nil
}

// errRestoreStopped ends the dump when the restore has failed.
var errRestoreStopped = errors.New("restore stopped")

// copyThroughNAR restores the NAR of src at dst (which must not exist).
// dumpErr is an error reading src (what it holds), err one writing dst.
func copyThroughNAR(src, dst string) (dumpErr, err error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := nar.Dump(pw, src)
		pw.CloseWithError(err)
		done <- err
	}()
	err = nar.Restore(pr, dst)
	pr.CloseWithError(errRestoreStopped)
	dumpErr = <-done
	if dumpErr != nil && !errors.Is(dumpErr, errRestoreStopped) {
		// The dump failed first (the restore failed for want of data).
		forceRemove(dst)
		return dumpErr, nil
	}
	if err != nil {
		forceRemove(dst)
		return nil, err
	}
	return nil, nil
}
