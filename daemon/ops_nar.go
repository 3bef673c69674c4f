package daemon

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"storefs/store"
	"storefs/store/nar"
	"storefs/store/narinfo"
	"storefs/store/nixhash"
	"storefs/store/signature"
	"storefs/store/storepath"
	"storefs/store/wire"
)

// received is one NAR unpacked into scratch space with what it measured.
type received struct {
	narHash nixhash.Hash
	narSize uint64
}

// receiveNAR unpacks one NAR from br at dst, taking no byte past its end.
func receiveNAR(br *bufio.Reader, dst string) (received, error) {
	nr := nar.NewReader(br)
	if err := nar.RestoreFrom(nr, dst); err != nil {
		return received{}, err
	}
	return received{narHash: nr.NarHash(), narSize: uint64(nr.NarSize())}, nil
}

// readInfo reads a ValidPathInfo with its path (AddToStoreNar's fields up
// to ca, and each entry of AddMultipleToStore).
func readInfo(r *wire.Reader, dir storepath.Dir) (*store.PathInfo, error) {
	var info store.PathInfo
	var err error
	if info.Path, err = r.Path("path", dir); err != nil {
		return nil, err
	}
	if info.Deriver, err = r.OptPath("deriver", dir); err != nil {
		return nil, err
	}
	start := r.Offset()
	h, err := r.String("narHash", wire.MaxSmall)
	if err != nil {
		return nil, err
	}
	if info.NarHash, err = parseNarHash(h); err != nil {
		return nil, r.Errorf("narHash", start, "%v", err)
	}
	if info.References, err = r.Paths("references", dir); err != nil {
		return nil, err
	}
	t, err := r.U64("registrationTime")
	if err != nil {
		return nil, err
	}
	if t != 0 {
		info.RegistrationTime = time.Unix(int64(t), 0)
	}
	if info.NarSize, err = r.U64("narSize"); err != nil {
		return nil, err
	}
	if _, err = r.Bool("ultimate"); err != nil { // never trusted from a client
		return nil, err
	}
	if info.Sigs, err = r.Strings("sigs", 1024, wire.MaxSmall); err != nil {
		return nil, err
	}
	start = r.Offset()
	ca, err := r.String("ca", wire.MaxSmall)
	if err != nil {
		return nil, err
	}
	if ca != "" {
		if info.CA, err = storepath.ParseContentAddress(ca); err != nil {
			return nil, r.Errorf("ca", start, "%v", err)
		}
	}
	return &info, nil
}

// parseNarHash takes a sha256 in any form Nix accepts: base16 with no
// prefix (what clients send), or sha256:<hash>, or SRI.
func parseNarHash(s string) (nixhash.Hash, error) {
	if !strings.Contains(s, ":") && !strings.Contains(s, "-") {
		return nixhash.ParseDigest(nixhash.SHA256, s)
	}
	h, err := nixhash.Parse(s)
	if err == nil && h.Algo != nixhash.SHA256 {
		err = fmt.Errorf("NAR hash %q is not sha256", s)
	}
	return h, err
}

// incoming is an upload being checked.
type incoming struct {
	c       *Conn
	tmp     string
	checkSi bool
	regs    []store.Registration
}

func (c *Conn) newIncoming(dontCheckSigs bool) (*incoming, error) {
	tmp, err := c.s.NewTemp()
	if err != nil {
		return nil, err
	}
	return &incoming{c: c, tmp: tmp, checkSi: !dontCheckSigs || !c.peer.Trusted}, nil
}

func (in *incoming) close() { removeTree(in.tmp) }

// add unpacks one path's NAR from br and checks it against info: its size
// and hash, its content address or (when required) its signatures.
func (in *incoming) add(info *store.PathInfo, br *bufio.Reader) error {
	c := in.c
	name := c.dir.Print(info.Path)
	dst := filepath.Join(in.tmp, strconv.Itoa(len(in.regs)))
	got, err := receiveNAR(br, dst)
	if err != nil {
		return fmt.Errorf("adding %s: %w", name, err)
	}
	if got.narSize != info.NarSize {
		return fmt.Errorf("adding %s: the NAR is %d bytes, the client said %d", name, got.narSize, info.NarSize)
	}
	if got.narHash != info.NarHash {
		return fmt.Errorf("hash mismatch adding %s: the client said %s, the NAR has %s", name, info.NarHash, got.narHash)
	}
	if err := in.checkTrust(info, dst); err != nil {
		return err
	}
	in.regs = append(in.regs, store.Registration{Info: *info, Contents: dst})
	return nil
}

// checkTrust accepts a path whose content address makes its name and
// matches its contents, or that a trusted key signed; or any path when
// the (trusted) client said not to check.
func (in *incoming) checkTrust(info *store.PathInfo, contents string) error {
	c := in.c
	name := c.dir.Print(info.Path)
	ni := &narinfo.NarInfo{StorePath: info.Path, NarHash: info.NarHash, NarSize: info.NarSize,
		References: info.References, CA: info.CA}
	if !info.CA.IsZero() {
		if !ni.IsContentAddressed(c.dir) {
			return fmt.Errorf("adding %s: its content address %s does not make that path", name, info.CA)
		}
		if err := checkCAContents(info, contents); err != nil {
			return fmt.Errorf("adding %s: %w", name, err)
		}
		return nil
	}
	if !in.checkSi {
		return nil
	}
	keys, err := signature.ParsePublicKeys(strings.Join(c.srv.TrustedPublicKeys, " "))
	if err != nil {
		return err
	}
	for _, s := range info.Sigs {
		sig, err := signature.ParseSignature(s)
		if err != nil {
			continue
		}
		ni.Sigs = append(ni.Sigs, sig)
	}
	if _, err := ni.Verify(c.dir, keys); err != nil {
		return fmt.Errorf("cannot add %s: it has no valid signature by a trusted key: %w", name, err)
	}
	return nil
}

// checkCAContents checks that the contents have the content address's
// hash: the NAR's for recursive, the file's for flat and text.
func checkCAContents(info *store.PathInfo, contents string) error {
	ca := info.CA
	var got nixhash.Hash
	switch {
	case ca.Recursive && ca.Hash.Algo == nixhash.SHA256:
		got = info.NarHash
	case ca.Recursive:
		h := ca.Hash.Algo.New()
		if err := nar.Dump(h, contents); err != nil {
			return err
		}
		got = nixhash.FromHasher(ca.Hash.Algo, h)
	default:
		f, err := os.Open(contents)
		if err != nil {
			return err
		}
		defer f.Close()
		if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
			return fmt.Errorf("content address %s needs a regular file", ca)
		}
		h := ca.Hash.Algo.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		got = nixhash.FromHasher(ca.Hash.Algo, h)
	}
	if got != ca.Hash {
		return fmt.Errorf("content address mismatch: %s, but the contents hash to %s", ca, got)
	}
	return nil
}

// register makes every checked path valid at once, or none.
func (in *incoming) register(ctx context.Context) error {
	if len(in.regs) == 0 {
		return nil
	}
	c := in.c
	ps := make([]storepath.Path, 0, len(in.regs))
	var refs []storepath.Path
	for _, r := range in.regs {
		ps = append(ps, r.Info.Path)
		refs = append(refs, r.Info.References...)
	}
	tr, err := c.tempRoots(ctx)
	if err != nil {
		return err
	}
	if err := tr.Add(ctx, append(refs, ps...)...); err != nil {
		return err
	}
	unlock, err := c.s.LockAll(ctx, ps)
	if err != nil {
		return err
	}
	defer unlock()
	return c.s.Register(in.regs...)
}

func opAddToStoreNar(ctx context.Context, c *Conn) error {
	info, err := readInfo(c.r, c.dir)
	if err != nil {
		return err
	}
	repair, err := c.r.Bool("repair")
	if err != nil {
		return err
	}
	dontCheckSigs, err := c.r.Bool("dontCheckSigs")
	if err != nil {
		return err
	}
	if minor(c.client) < 23 {
		return fmt.Errorf("AddToStoreNar: protocol 1.%d sends the NAR unframed, which storefs does not read (1.23 or later needed)", minor(c.client))
	}
	c.startWork()
	in, err := c.newIncoming(dontCheckSigs)
	if err != nil {
		return err
	}
	defer in.close()
	err = c.upload("nar", func(r io.Reader) error {
		if repair && !c.peer.Trusted {
			return errNotTrusted("repair paths")
		}
		br := bufio.NewReaderSize(r, 1<<16)
		if err := in.add(info, br); err != nil {
			return err
		}
		if _, err := br.ReadByte(); err != io.EOF {
			return fmt.Errorf("adding %s: data after the NAR", c.dir.Print(info.Path))
		}
		return nil
	})
	if err == nil {
		err = in.register(ctx)
	}
	if err != nil {
		return err
	}
	c.stopWork()
	return nil
}

// maxMultiple bounds the paths of one AddMultipleToStore.
const maxMultiple = 1 << 20

func opAddMultipleToStore(ctx context.Context, c *Conn) error {
	repair, err := c.r.Bool("repair")
	if err != nil {
		return err
	}
	dontCheckSigs, err := c.r.Bool("dontCheckSigs")
	if err != nil {
		return err
	}
	c.startWork()
	in, err := c.newIncoming(dontCheckSigs)
	if err != nil {
		return err
	}
	defer in.close()
	err = c.upload("payload", func(r io.Reader) error {
		if repair && !c.peer.Trusted {
			return errNotTrusted("repair paths")
		}
		br := bufio.NewReaderSize(r, 1<<16)
		pr := wire.NewReader(br)
		pr.SetContext(c.r.Context() + " payload")
		n, err := pr.Count("paths", maxMultiple)
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			info, err := readInfo(pr, c.dir)
			if err != nil {
				return err
			}
			if err := in.add(info, br); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = in.register(ctx)
	}
	if err != nil {
		return err
	}
	c.stopWork()
	return nil
}
