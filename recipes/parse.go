package recipes

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

//go:embed presets/*.yaml
var presetFS embed.FS

// Presets returns the names of the shipped presets, sorted.
func Presets() []string {
	entries, err := presetFS.ReadDir("presets")
	if err != nil {
		panic("recipes: embedded presets: " + err.Error())
	}
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	slices.Sort(names)
	return names
}

// Preset returns the shipped preset called name, resolved.
// Presets stand alone (they have no base), so reading one never depends on another.
func Preset(name string) (*Recipe, error) {
	data, err := presetFS.ReadFile("presets/" + name + ".yaml")
	if err != nil || strings.ContainsAny(name, `/\`) {
		return nil, fmt.Errorf("recipes: %s", unknownPreset(name))
	}
	r, err := parse("presets/"+name+".yaml", data, "", false)
	if err != nil {
		return nil, err
	}
	r.Source = name
	return r, nil
}

func unknownPreset(name string) string {
	msg := fmt.Sprintf("unknown preset %q", name)
	if s := closest(name, Presets()); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return msg + "; presets are " + strings.Join(Presets(), ", ")
}

// Load returns the preset called nameOrPath or, when no preset has that name, the recipe in
// that file. A preset name wins over a file of the same name in the working directory;
// write ./NAME for the file.
func Load(nameOrPath string) (*Recipe, error) {
	if slices.Contains(Presets(), nameOrPath) {
		return Preset(nameOrPath)
	}
	data, err := readRecipeFile(nameOrPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !strings.ContainsAny(nameOrPath, `/\.`) {
			return nil, fmt.Errorf("recipes: %s, and there is no file %s", unknownPreset(nameOrPath), nameOrPath)
		}
		return nil, fmt.Errorf("recipes: %w", err)
	}
	return parse(nameOrPath, data, filepath.Dir(nameOrPath), true)
}

// MaxFileSize bounds a recipe file: 1 MiB, a thousand times the largest preset.
const MaxFileSize = 1 << 20

// ErrTooLarge is returned for a recipe beyond MaxFileSize.
var ErrTooLarge = errors.New("larger than the 1 MiB limit on recipe files")

// readRecipeFile reads a recipe file: a regular file of at most MaxFileSize bytes.
func readRecipeFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if st.Size() > MaxFileSize {
		return nil, fmt.Errorf("%s is %d bytes, %w", path, st.Size(), ErrTooLarge)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: %w", path, ErrTooLarge)
	}
	return data, nil
}

// Parse reads a recipe. name is used in messages (file:line:column) and as Source. The
// recipe starts from its base preset, or the defaults, and the file's values override it.
// Every problem in the file is reported at once, in an *Error. A relative calibration path
// is relative to the working directory; Load makes it relative to the file instead.
func Parse(name string, data []byte) (*Recipe, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("recipes: %s is %d bytes, %w", name, len(data), ErrTooLarge)
	}
	return parse(name, data, "", true)
}

func parse(name string, data []byte, dir string, allowBase bool) (*Recipe, error) {
	src := &source{file: name, dir: dir, key: map[string]pos{}, val: map[string]pos{}}
	d := newDiag(name, src)
	root := document(d, data)
	if root == nil {
		return nil, d.err()
	}
	base := defaults()
	if k, v := lookup(root, "base"); k != nil && !allowBase {
		d.addAt(posOf(k), "a preset cannot have a base")
		d.markBad("base")
	} else if v != nil && v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str" {
		if b, err := Preset(v.Value); err != nil {
			d.addAt(posOf(v), "base: %s", strings.TrimPrefix(err.Error(), "recipes: "))
			d.markBad("base")
		} else {
			base = b
			src.base = v.Value
		}
	}
	r := base.clone()
	// Description and version belong to one file, never to its base: a recipe that changes
	// a preset is not described by the preset's sentence, and it must state which language
	// it is written in itself.
	r.Version, r.Description = 0, ""
	p := &parser{d: d, r: r}
	p.mapping(root, "", schema)
	if !src.explicit("calibration.format") && src.explicit("calibration.data") {
		r.Calibration.Format = ""
	}
	r.Source = name
	r.src = src
	check(r, d, true)
	if err := d.err(); err != nil {
		return nil, err
	}
	r.normalize()
	return r, nil
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// document decodes data into the recipe's root mapping, or reports why there is none.
func document(d *diag, data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			d.addAt(pos{}, "empty recipe: a recipe needs at least `version: %d`", Version)
		} else {
			syntaxProblem(d, err, data)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		d.addAt(posOf(&extra), "a recipe is one YAML document, but a second one starts here")
	case err != io.EOF:
		syntaxProblem(d, err, data)
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		d.addAt(pos{}, "empty recipe: a recipe needs at least `version: %d`", Version)
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		d.addAt(posOf(root), "a recipe is a mapping of sections (version, calibration, weights, ...), but this document is %s", describe(root))
		return nil
	}
	if len(d.probs) > 0 {
		return nil
	}
	return root
}

// syntaxProblem turns a yaml.v3 syntax error into a problem. yaml.v3 gives no column, and
// leaves the line out when it is the first one (its marks count lines from 0, and it omits
// line 0). Its other errors (an alias to an unknown anchor) have no place at all.
func syntaxProblem(d *diag, err error, data []byte) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var p pos
	if !strings.HasPrefix(msg, "unknown anchor") {
		p.line = 1
	}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		p.line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	// The commonest syntax error in hand-written YAML deserves a plain explanation.
	if lines := strings.Split(string(data), "\n"); p.line > 0 && p.line <= len(lines) {
		line := lines[p.line-1]
		if indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]; strings.Contains(indent, "\t") {
			msg += " (a tab in the indentation: YAML indents with spaces only)"
		}
	}
	d.addAt(p, "invalid YAML: %s", msg)
}

func posOf(n *yaml.Node) pos { return pos{n.Line, n.Column} }

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// lookup returns the first key and value named key in a mapping.
func lookup(m *yaml.Node, key string) (k, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:37] + "..."
	}
	switch n.ShortTag() {
	case "!!str":
		return fmt.Sprintf("the string %q", v)
	case "!!int":
		return "the integer " + v
	case "!!float":
		return "the number " + v
	case "!!bool":
		return "the boolean " + v
	case "!!null":
		return "nothing"
	}
	return fmt.Sprintf("%s %q", n.ShortTag(), v)
}

// field is one key of the schema: a section (sub) or a value (set).
type field struct {
	key string
	sub []field
	set func(p *parser, path string, v *yaml.Node)
}

// schema is the recipe language. Keeping it as data lets unknown keys be answered with
// the keys that do exist, including the section a misplaced key belongs in.
var schema = []field{
	{key: "version", set: func(p *parser, path string, v *yaml.Node) { p.int(v, path, &p.r.Version) }},
	{key: "base", set: func(p *parser, path string, v *yaml.Node) {
		var s string
		p.string(v, path, &s)
	}},
	{key: "description", set: func(p *parser, path string, v *yaml.Node) { p.string(v, path, &p.r.Description) }},
	{key: "calibration", sub: []field{
		{key: "data", set: func(p *parser, path string, v *yaml.Node) { p.string(v, path, &p.r.Calibration.Data) }},
		{key: "format", set: func(p *parser, path string, v *yaml.Node) { p.string(v, path, &p.r.Calibration.Format) }},
		{key: "samples", set: func(p *parser, path string, v *yaml.Node) { p.int(v, path, &p.r.Calibration.Samples) }},
		{key: "seq_len", set: func(p *parser, path string, v *yaml.Node) { p.int(v, path, &p.r.Calibration.SeqLen) }},
		{key: "seed", set: func(p *parser, path string, v *yaml.Node) { p.int64(v, path, &p.r.Calibration.Seed) }},
		{key: "propagate", set: func(p *parser, path string, v *yaml.Node) { stringAs(p, v, path, &p.r.Calibration.Propagate) }},
	}},
	{key: "equalization", sub: []field{
		{key: "method", set: func(p *parser, path string, v *yaml.Node) { stringAs(p, v, path, &p.r.Equalization.Method) }},
		{key: "statistic", set: func(p *parser, path string, v *yaml.Node) { stringAs(p, v, path, &p.r.Equalization.Statistic) }},
		{key: "alpha", set: func(p *parser, path string, v *yaml.Node) { p.float(v, path, &p.r.Equalization.Alpha) }},
		{key: "pairs", set: func(p *parser, path string, v *yaml.Node) {
			if xs, ok := p.strings(v, path); ok {
				p.r.Equalization.Pairs = make([]Pair, len(xs))
				for i, x := range xs {
					p.r.Equalization.Pairs[i] = Pair(x)
				}
			}
		}},
	}},
	{key: "activations", sub: []field{
		{key: "bits", set: func(p *parser, path string, v *yaml.Node) { p.int(v, path, &p.r.Activations.Bits) }},
		{key: "policy", set: func(p *parser, path string, v *yaml.Node) { stringAs(p, v, path, &p.r.Activations.Policy) }},
		{key: "thresholds", sub: []field{
			{key: "v0", set: func(p *parser, path string, v *yaml.Node) { p.float(v, path, &p.r.Activations.Thresholds.V0) }},
			{key: "v1", set: func(p *parser, path string, v *yaml.Node) { p.float(v, path, &p.r.Activations.Thresholds.V1) }},
		}},
	}},
	{key: "weights", sub: []field{
		{key: "bits", set: func(p *parser, path string, v *yaml.Node) { p.int(v, path, &p.r.Weights.Bits) }},
		{key: "group_size", set: func(p *parser, path string, v *yaml.Node) { p.groupSize(v, path) }},
		{key: "method", set: func(p *parser, path string, v *yaml.Node) { stringAs(p, v, path, &p.r.Weights.Method) }},
		{key: "clip", sub: []field{
			{key: "search", set: func(p *parser, path string, v *yaml.Node) { p.bool(v, path, &p.r.Weights.Clip.Search) }},
			{key: "min", set: func(p *parser, path string, v *yaml.Node) { p.float(v, path, &p.r.Weights.Clip.Min) }},
			{key: "steps", set: func(p *parser, path string, v *yaml.Node) { p.int(v, path, &p.r.Weights.Clip.Steps) }},
			{key: "activation_aware", set: func(p *parser, path string, v *yaml.Node) { p.bool(v, path, &p.r.Weights.Clip.ActivationAware) }},
		}},
		{key: "gptq", sub: []field{
			{key: "block_size", set: func(p *parser, path string, v *yaml.Node) { p.int(v, path, &p.r.Weights.GPTQ.BlockSize) }},
			{key: "damp", set: func(p *parser, path string, v *yaml.Node) { p.float(v, path, &p.r.Weights.GPTQ.Damp) }},
			{key: "act_order", set: func(p *parser, path string, v *yaml.Node) { p.bool(v, path, &p.r.Weights.GPTQ.ActOrder) }},
			{key: "static_groups", set: func(p *parser, path string, v *yaml.Node) { p.bool(v, path, &p.r.Weights.GPTQ.StaticGroups) }},
		}},
		{key: "fallback", set: func(p *parser, path string, v *yaml.Node) { stringAs(p, v, path, &p.r.Weights.Fallback) }},
	}},
	{key: "integer_scale", sub: []field{
		{key: "enabled", set: func(p *parser, path string, v *yaml.Node) { p.bool(v, path, &p.r.IntegerScale.Enabled) }},
		{key: "amplifier", set: func(p *parser, path string, v *yaml.Node) { p.amplifier(v, path) }},
		{key: "max_amplifier", set: func(p *parser, path string, v *yaml.Node) { p.int(v, path, &p.r.IntegerScale.MaxAmplifier) }},
	}},
	{key: "skip", set: func(p *parser, path string, v *yaml.Node) {
		if xs, ok := p.strings(v, path); ok {
			p.r.Skip = xs
		}
	}},
	{key: "output", sub: []field{
		{key: "shard_size", set: func(p *parser, path string, v *yaml.Node) { p.shardSize(v, path) }},
		{key: "format", set: func(p *parser, path string, v *yaml.Node) { stringAs(p, v, path, &p.r.Output.Format) }},
	}},
}

// homes maps every key name to the full paths where the schema has it, for telling a user
// who put a key in the wrong section where it goes.
var homes = func() map[string][]string {
	m := map[string][]string{}
	var walk func(prefix string, fs []field)
	walk = func(prefix string, fs []field) {
		for _, f := range fs {
			path := join(prefix, f.key)
			m[f.key] = append(m[f.key], path)
			walk(path, f.sub)
		}
	}
	walk("", schema)
	return m
}()

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// parser walks the YAML node tree against the schema, writing values into r (a copy of the
// base) and recording where each was set.
type parser struct {
	d *diag
	r *Recipe
}

func (p *parser) mapping(n *yaml.Node, prefix string, fields []field) {
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.ShortTag() == "!!merge" {
			p.d.addAt(posOf(k), "merge keys (<<) are not supported in recipes; write the values out")
			continue
		}
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			p.d.addAt(posOf(k), "%s: keys are names, but this one is %s", where(prefix), describe(k))
			continue
		}
		path := join(prefix, k.Value)
		if first, dup := seen[k.Value]; dup {
			p.d.addAt(posOf(k), "duplicate key %q (first at line %d, column %d)", path, first.Line, first.Column)
			p.d.markBad(path)
			continue
		}
		seen[k.Value] = k
		i := slices.IndexFunc(fields, func(f field) bool { return f.key == k.Value })
		if i < 0 {
			p.unknown(k, prefix, fields)
			continue
		}
		f := fields[i]
		p.d.src.key[path] = posOf(k)
		switch {
		case v.Kind == yaml.AliasNode:
			p.d.addAt(posOf(v), "%s: aliases (*%s) are not supported in recipes; write the value out", path, v.Value)
			p.d.markBad(path)
		case isNull(v):
			p.d.addAt(posOf(v), "%s has no value (leave the key out to keep the default)", path)
			p.d.markBad(path)
		case f.sub != nil && v.Kind != yaml.MappingNode:
			p.wrongType(v, path, "a mapping")
		case f.sub != nil:
			// A section is "set" where its key is, which is where a message about the whole
			// section (one that does not apply, say) should point.
			p.d.src.val[path] = posOf(k)
			p.mapping(v, path, f.sub)
		default:
			f.set(p, path, v)
		}
	}
}

func where(prefix string) string {
	if prefix == "" {
		return "top level"
	}
	return prefix
}

func (p *parser) unknown(k *yaml.Node, prefix string, fields []field) {
	msg := fmt.Sprintf("unknown key %q", k.Value)
	if prefix != "" {
		msg += " in " + prefix
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.key
	}
	switch s := closest(k.Value, names); {
	case s != "":
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	case len(homes[k.Value]) > 0:
		msg += fmt.Sprintf(" (did you mean %s?)", orList(homes[k.Value]))
	default:
		msg += fmt.Sprintf(" (known keys: %s)", strings.Join(names, ", "))
	}
	p.d.addAt(posOf(k), "%s", msg)
}

func (p *parser) wrongType(v *yaml.Node, path, want string) {
	p.d.addAt(posOf(v), "%s: expected %s, got %s", path, want, describe(v))
	p.d.markBad(path)
}

// scalar checks that v is a scalar with the given resolved tag.
func (p *parser) scalar(v *yaml.Node, path, tag, want string) bool {
	if v.Kind != yaml.ScalarNode || v.ShortTag() != tag {
		p.wrongType(v, path, want)
		return false
	}
	return true
}

func (p *parser) ok(v *yaml.Node, path string) { p.d.src.val[path] = posOf(v) }

func (p *parser) int(v *yaml.Node, path string, dst *int) {
	if !p.scalar(v, path, "!!int", "an integer") {
		return
	}
	var x int
	if err := v.Decode(&x); err != nil {
		p.d.addAt(posOf(v), "%s: %s is out of range", path, v.Value)
		p.d.markBad(path)
		return
	}
	*dst = x
	p.ok(v, path)
}

func (p *parser) int64(v *yaml.Node, path string, dst *int64) {
	if !p.scalar(v, path, "!!int", "an integer") {
		return
	}
	var x int64
	if err := v.Decode(&x); err != nil {
		p.d.addAt(posOf(v), "%s: %s is out of range", path, v.Value)
		p.d.markBad(path)
		return
	}
	*dst = x
	p.ok(v, path)
}

func (p *parser) float(v *yaml.Node, path string, dst *float64) {
	if v.Kind != yaml.ScalarNode || (v.ShortTag() != "!!float" && v.ShortTag() != "!!int") {
		p.wrongType(v, path, "a number")
		return
	}
	var x float64
	if err := v.Decode(&x); err != nil {
		p.d.addAt(posOf(v), "%s: %s is not a number", path, v.Value)
		p.d.markBad(path)
		return
	}
	*dst = x
	p.ok(v, path)
}

func (p *parser) bool(v *yaml.Node, path string, dst *bool) {
	if !p.scalar(v, path, "!!bool", "true or false") {
		return
	}
	*dst = v.Value == "true" || v.Value == "True" || v.Value == "TRUE"
	p.ok(v, path)
}

func (p *parser) string(v *yaml.Node, path string, dst *string) {
	if !p.scalar(v, path, "!!str", "a string") {
		return
	}
	*dst = v.Value
	p.ok(v, path)
}

// stringAs reads a string into one of the enum types; check says whether the value is one
// of the enum's, so that a Recipe built in Go gets the same message.
func stringAs[T ~string](p *parser, v *yaml.Node, path string, dst *T) {
	var s string
	p.string(v, path, &s)
	if p.d.src.explicit(path) {
		*dst = T(s)
	}
}

// strings reads a list of strings, recording each item's position as path[i].
func (p *parser) strings(v *yaml.Node, path string) ([]string, bool) {
	if v.Kind != yaml.SequenceNode {
		p.wrongType(v, path, "a list")
		return nil, false
	}
	// A malformed item keeps its place as "" (marked bad), so that the other items are
	// still checked and keep their indices.
	xs := make([]string, len(v.Content))
	for i, item := range v.Content {
		ip := fmt.Sprintf("%s[%d]", path, i)
		if item.Kind == yaml.AliasNode {
			p.d.addAt(posOf(item), "%s: aliases (*%s) are not supported in recipes; write the value out", ip, item.Value)
			p.d.markBad(ip)
			continue
		}
		if p.scalar(item, ip, "!!str", "a string") {
			xs[i] = item.Value
			p.ok(item, ip)
		}
	}
	p.ok(v, path)
	return xs, true
}

// groupSize reads an integer or per-channel. Zero and negative numbers are refused here,
// because in the Recipe zero means per-channel.
func (p *parser) groupSize(v *yaml.Node, path string) {
	want := "one of " + groupSizeChoices()
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str" {
		if v.Value != "per-channel" {
			msg := fmt.Sprintf("%s: expected %s, got %s", path, want, describe(v))
			if s := closest(v.Value, []string{"per-channel"}); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			p.d.addAt(posOf(v), "%s", msg)
			p.d.markBad(path)
			return
		}
		p.r.Weights.GroupSize = PerChannel
		p.ok(v, path)
		return
	}
	var n int
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Decode(&n) != nil || n <= 0 {
		p.wrongType(v, path, want)
		return
	}
	p.r.Weights.GroupSize = n
	p.ok(v, path)
}

func groupSizeChoices() string {
	xs := make([]string, 0, len(groupSizes)+1)
	for _, g := range groupSizes {
		xs = append(xs, strconv.Itoa(g))
	}
	return orList(append(xs, "per-channel"))
}

// amplifier reads max-safe or a positive integer (zero would mean max-safe in the Recipe).
func (p *parser) amplifier(v *yaml.Node, path string) {
	const want = "max-safe or a power of two"
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str" {
		if v.Value != "max-safe" {
			p.wrongType(v, path, want)
			return
		}
		p.r.IntegerScale.Amplifier = MaxSafe
		p.ok(v, path)
		return
	}
	var n int
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Decode(&n) != nil || n <= 0 {
		p.wrongType(v, path, want)
		return
	}
	p.r.IntegerScale.Amplifier = n
	p.ok(v, path)
}

func (p *parser) shardSize(v *yaml.Node, path string) {
	const want = `a size such as "2GiB" or a number of bytes`
	if v.Kind != yaml.ScalarNode || (v.ShortTag() != "!!str" && v.ShortTag() != "!!int") {
		p.wrongType(v, path, want)
		return
	}
	n, err := ParseSize(v.Value)
	if err != nil {
		p.d.addAt(posOf(v), "%s: %v", path, err)
		p.d.markBad(path)
		return
	}
	p.r.Output.ShardSize = n
	p.ok(v, path)
}
