package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"unicode/utf8"
)

// index is a parsed model.safetensors.index.json.
type index struct {
	weightMap map[string]string // tensor name → shard file name, as written
	metadata  map[string]string // "metadata" values, stringified
}

// parseIndex parses an index file. Like headers, it rejects duplicate keys, which
// encoding/json would resolve silently.
func parseIndex(path string, buf []byte) (*index, error) {
	if !utf8.Valid(buf) {
		return nil, &FormatError{File: path, Msg: "index is not valid UTF-8"}
	}
	ix := &index{}
	w := newJSONWalker(path, buf)
	err := w.object("index", func(key string) error {
		switch key {
		case "weight_map":
			m, err := w.stringMap("weight_map")
			if err == nil && m == nil {
				err = w.fail("", "weight_map is null, want a JSON object")
			}
			ix.weightMap = m
			return err
		case "metadata":
			return w.anyMap("metadata", &ix.metadata)
		}
		return w.skip("", key)
	})
	if err == nil {
		err = w.end("index")
	}
	if err != nil {
		return nil, err
	}
	if ix.weightMap == nil {
		return nil, &FormatError{File: path, Msg: "index has no \"weight_map\""}
	}
	return ix, nil
}

// anyMap reads an object (or null) of arbitrary JSON values, keeping strings as they are and
// anything else as its compact JSON text.
func (w *jsonWalker) anyMap(what string, out *map[string]string) error {
	tok, err := w.token("", what)
	if err != nil || tok == nil {
		return err
	}
	if tok != json.Delim('{') {
		return w.fail("", "%s is %s, want a JSON object", what, describe(tok))
	}
	m := make(map[string]string)
	*out = m
	return w.objectBody("", what, func(key string) error {
		var raw json.RawMessage
		if err := w.dec.Decode(&raw); err != nil {
			return &FormatError{File: w.file, Msg: fmt.Sprintf("invalid JSON in %s value for key %q", what, key), Err: err}
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			m[key] = s
			return nil
		}
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return &FormatError{File: w.file, Msg: fmt.Sprintf("invalid JSON in %s value for key %q", what, key), Err: err}
		}
		m[key] = b.String()
		return nil
	})
}

// openIndex opens a sharded checkpoint through its index file.
func openIndex(path string) (*Checkpoint, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	if st.Size() > MaxHeaderSize {
		return nil, &FormatError{File: path, Msg: fmt.Sprintf("index is %d bytes, over the %d-byte limit", st.Size(), MaxHeaderSize)}
	}
	buf, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	ix, err := parseIndex(path, buf)
	if err != nil {
		return nil, err
	}

	// Group tensors by shard. Shard names are cleaned so that "a.safetensors" and
	// "./a.safetensors" open one file, and must stay inside the index's folder: an index
	// is as untrusted as a header, and "../../etc/passwd" is not a shard.
	dir := filepath.Dir(path)
	byShard := make(map[string][]string) // cleaned shard name → tensor names
	cleaned := make(map[string]string)   // tensor name → cleaned shard name
	names := make([]string, 0, len(ix.weightMap))
	for name := range ix.weightMap {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		raw := ix.weightMap[name]
		sh := filepath.Clean(filepath.FromSlash(raw))
		if raw == "" || sh == "." || !filepath.IsLocal(sh) {
			return nil, &FormatError{File: path, Tensor: name, Msg: fmt.Sprintf("weight_map names shard %q, which is not a file name inside the index's folder", raw)}
		}
		byShard[sh] = append(byShard[sh], name)
		cleaned[name] = sh
	}
	shardNames := make([]string, 0, len(byShard))
	for sh := range byShard {
		shardNames = append(shardNames, sh)
	}
	slices.Sort(shardNames)

	var shards []*shard
	fail := func(err error) (*Checkpoint, error) {
		closeShards(shards)
		return nil, err
	}
	for _, sh := range shardNames {
		p := filepath.Join(dir, sh)
		s, err := openShard(p)
		if err != nil {
			var fe *FormatError
			if errors.As(err, &fe) {
				return fail(err)
			}
			return fail(&FormatError{File: path, Tensor: byShard[sh][0],
				Msg: fmt.Sprintf("shard %q named in weight_map cannot be opened", ix.weightMap[byShard[sh][0]]), Err: err})
		}
		shards = append(shards, s)
	}

	// Cross-check both directions. First every weight_map entry against its shard...
	held := make(map[string]map[string]bool, len(shards)) // shard path → names it holds
	for _, s := range shards {
		set := make(map[string]bool, len(s.hdr.tensors))
		for _, t := range s.hdr.tensors {
			set[t.Name] = true
		}
		held[s.path] = set
	}
	for _, name := range names {
		p := filepath.Join(dir, cleaned[name])
		if !held[p][name] {
			return fail(&FormatError{File: path, Tensor: name,
				Msg: fmt.Sprintf("weight_map places the tensor in %q, which does not hold it", ix.weightMap[name])})
		}
	}
	// ...then every shard's tensors against weight_map.
	for _, s := range shards {
		for _, t := range s.hdr.tensors {
			sh, ok := cleaned[t.Name]
			if !ok {
				return fail(&FormatError{File: s.path, Tensor: t.Name,
					Msg: fmt.Sprintf("the shard holds the tensor but the index %s does not list it in weight_map", path)})
			}
			if want := filepath.Join(dir, sh); want != s.path {
				return fail(&FormatError{File: s.path, Tensor: t.Name,
					Msg: fmt.Sprintf("the tensor is stored in two shards: here and in %q, where weight_map places it", ix.weightMap[t.Name])})
			}
		}
	}
	return newCheckpoint(path, shards, ix.metadata), nil
}
