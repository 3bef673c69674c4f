package realise

import (
	"bufio"
	"compress/bzip2"
	"fmt"
	"io"
	"os/exec"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compressions are the values of a narinfo's Compression that storefs reads
// and writes, as Nix names them.
var Compressions = []string{"none", "xz", "zstd", "bzip2", "br"}

// narExtension is what Nix appends to `nar/<file hash>.nar` for each
// compression (BinaryCacheStore::addToStoreCommon).
func narExtension(compression string) string {
	switch compression {
	case "xz":
		return ".xz"
	case "zstd":
		return ".zst"
	case "bzip2":
		return ".bz2"
	case "br":
		return ".br"
	}
	return ""
}

func checkCompression(c string) error {
	for _, k := range Compressions {
		if c == k {
			return nil
		}
	}
	return fmt.Errorf("unsupported compression %q (storefs reads none, xz, zstd, bzip2 and br)", c)
}

// decompressor returns a reader of what r decompresses to. Close releases
// the decoder (zstd's runs goroutines); it does not close r.
func decompressor(compression string, r io.Reader) (io.ReadCloser, error) {
	switch compression {
	case "none":
		return io.NopCloser(r), nil
	case "xz":
		// ulikunitz/xz reads small pieces; a buffer in front saves calls.
		xr, err := xz.NewReader(bufio.NewReaderSize(r, 256<<10))
		if err != nil {
			return nil, err // "xz: ..."
		}
		return io.NopCloser(xr), nil
	case "zstd":
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<31))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zstdReader{d}, nil
	case "bzip2":
		return io.NopCloser(bzip2.NewReader(bufio.NewReaderSize(r, 256<<10))), nil
	case "br":
		return io.NopCloser(brotli.NewReader(r)), nil
	}
	return nil, checkCompression(compression)
}

type zstdReader struct{ d *zstd.Decoder }

func (z zstdReader) Read(p []byte) (int, error) { return z.d.Read(p) }
func (z zstdReader) Close() error               { z.d.Close(); return nil }

// compressor returns a writer that compresses into w; Close finishes the
// stream (it does not close w). The standard library has no bzip2 encoder,
// so bzip2 runs the bzip2 program.
func compressor(compression string, w io.Writer) (io.WriteCloser, error) {
	switch compression {
	case "none":
		return nopWriteCloser{w}, nil
	case "xz":
		xw, err := xz.WriterConfig{DictCap: 8 << 20}.NewWriter(w)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		return xw, nil
	case "zstd":
		zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zw, nil
	case "bzip2":
		return newExecCompressor(w, "bzip2", "-c")
	case "br":
		return brotli.NewWriterLevel(w, 6), nil
	}
	return nil, checkCompression(compression)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// execCompressor pipes through an external compressor.
type execCompressor struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	name string
}

func newExecCompressor(w io.Writer, name string, args ...string) (io.WriteCloser, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("%s compression needs the %s program: %w", name, name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout = w
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return &execCompressor{cmd: cmd, in: in, name: name}, nil
}

func (e *execCompressor) Write(p []byte) (int, error) { return e.in.Write(p) }

func (e *execCompressor) Close() error {
	e.in.Close()
	if err := e.cmd.Wait(); err != nil {
		return fmt.Errorf("%s: %w", e.name, err)
	}
	return nil
}
