package nar

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Listing is the tree of a NAR as a binary cache's `.ls` file holds it
// (docs/formats.md, "NAR"): each node's type, each file's size,
// executable bit and narOffset, each symlink's target.
type Listing struct {
	Root *Node
}

// Node is one node of a Listing.
type Node struct {
	Type       Type
	Size       int64  // regular files
	Executable bool   // regular files
	NarOffset  int64  // regular files: where the contents start in the NAR
	Target     string // symlinks
	Entries    []Entry
}

// Entry is a named node in a directory; a directory's Entries are sorted.
type Entry struct {
	Name string
	Node *Node
}

// List reads the whole archive from r (which must be at its start) and
// returns its listing. It stops at the archive's end; the caller may then
// check what follows with r.CheckEOF.
func List(r *Reader) (*Listing, error) {
	if r.state != stMagic || r.err != nil {
		return nil, errors.New("nar: List needs a Reader at the start of an archive")
	}
	var root *Node
	type open struct {
		path string
		node *Node
	}
	var dirs []open
	for {
		h, err := r.Next()
		if err == io.EOF {
			return &Listing{Root: root}, nil
		}
		if err != nil {
			return nil, err
		}
		n := &Node{Type: h.Type}
		switch h.Type {
		case TypeRegular:
			n.Size, n.Executable, n.NarOffset = h.Size, h.Executable, h.Offset
		case TypeSymlink:
			n.Target = h.LinkTarget
		}
		if root == nil {
			root = n
		} else {
			parent, name := "", h.Path
			if i := strings.LastIndexByte(h.Path, '/'); i >= 0 {
				parent, name = h.Path[:i], h.Path[i+1:]
			}
			for len(dirs) > 0 && dirs[len(dirs)-1].path != parent {
				dirs = dirs[:len(dirs)-1]
			}
			if len(dirs) == 0 {
				return nil, &Error{Offset: r.off, Path: h.Path, Err: errors.New("entry outside any directory")}
			}
			d := dirs[len(dirs)-1].node
			d.Entries = append(d.Entries, Entry{Name: name, Node: n})
		}
		if h.Type == TypeDirectory {
			dirs = append(dirs, open{h.Path, n})
		}
	}
}

// Lookup finds the node at path in the listing: "/" or "" is the root,
// "/a/b" and "a/b" the entry b of a.
func (l *Listing) Lookup(path string) (*Node, error) {
	n := l.Root
	for _, name := range strings.Split(path, "/") {
		if name == "" || name == "." {
			continue
		}
		if n.Type != TypeDirectory {
			return nil, fmt.Errorf("path %q does not exist in the archive (%q is not a directory)", path, name)
		}
		var next *Node
		for _, e := range n.Entries {
			if e.Name == name {
				next = e.Node
				break
			}
		}
		if next == nil {
			return nil, fmt.Errorf("path %q does not exist in the archive", path)
		}
		n = next
	}
	return n, nil
}

// MarshalJSON writes the `.ls` form byte for byte as Nix writes it:
// {"version":1,"root":...}.
func (l *Listing) MarshalJSON() ([]byte, error) {
	b := []byte(`{"version":1,"root":`)
	b = l.Root.appendJSON(b)
	return append(b, '}'), nil
}

// MarshalJSON writes the node as Nix does, keys in Nix's order.
func (n *Node) MarshalJSON() ([]byte, error) { return n.appendJSON(nil), nil }

func (n *Node) appendJSON(b []byte) []byte {
	b = append(b, `{"type":`...)
	b = appendJSONString(b, n.Type.String())
	switch n.Type {
	case TypeRegular:
		b = append(b, `,"size":`...)
		b = strconv.AppendInt(b, n.Size, 10)
		if n.Executable {
			b = append(b, `,"executable":true`...)
		}
		b = append(b, `,"narOffset":`...)
		b = strconv.AppendInt(b, n.NarOffset, 10)
	case TypeSymlink:
		b = append(b, `,"target":`...)
		b = appendJSONString(b, n.Target)
	case TypeDirectory:
		b = append(b, `,"entries":{`...)
		for i, e := range n.Entries {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, e.Name)
			b = append(b, ':')
			b = e.Node.appendJSON(b)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendJSONString quotes s as Nix 2.8's JSON writer does: `"` and `\`
// escaped, \n \r \t by name, other bytes below 0x20 as \u00xx, and every
// other byte (including invalid UTF-8) as it is.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
