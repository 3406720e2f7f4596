package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"

	"github.com/odyssey-llm/odyssey/formats/hf"
	"github.com/odyssey-llm/odyssey/recipes"
	"github.com/spf13/cobra"
)

func newRecipesCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "recipes",
		Short: "List, show and check quantization recipes",
		Long: `A recipe is a small YAML file that says how a model is quantized: calibration, activation
equalization (LAE or SmoothQuant), the activation policy, the weight quantizer, Integer Scale, the
modules kept in 16 bits and the output. Presets are selectable by name; a recipe file may start
from one with "base: NAME" and override what it needs. The language reference is the doc comment
of package recipes (go doc github.com/odyssey-llm/odyssey/recipes).`,
	}
	cmd.AddCommand(newRecipesListCmd(g), newRecipesShowCmd(g), newRecipesValidateCmd(g))
	return cmd
}

// recipeRow is one line of `odyssey recipes list --json`. Field names are a stable interface.
type recipeRow struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Default     bool   `json:"default"`
	Hash        string `json:"hash"`
}

func newRecipesListCmd(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the preset recipes",
		Example: "  odyssey recipes list\n  odyssey recipes list --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var rows []recipeRow
			for _, name := range recipes.Presets() {
				r, err := recipes.Preset(name)
				if err != nil {
					return err // a broken embedded preset is a bug, not bad input
				}
				rows = append(rows, recipeRow{Name: name, Description: r.Description, Default: name == recipes.Default, Hash: r.Hash()})
			}
			if asJSON {
				return writeJSON(g.out, rows)
			}
			tw := tabwriter.NewWriter(g.out, 0, 0, 2, ' ', 0)
			for _, row := range rows {
				name := row.Name
				if row.Default {
					name += " (default)"
				}
				fmt.Fprintf(tw, "%s\t%s\n", name, row.Description)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print machine-readable JSON")
	return cmd
}

func newRecipesShowCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME|FILE",
		Short: "Print a recipe fully resolved",
		Long: `Show prints a preset or a recipe file with its base and every default filled in, as
canonical YAML: the values that apply, in schema order. The output is itself a valid recipe, and
the one a quantized model records in its provenance.`,
		Example: "  odyssey recipes show w4a8-fptq\n  odyssey recipes show ci/recipe.yaml > resolved.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := recipes.Load(args[0])
			if err != nil {
				return recipeError(g, args[0], err)
			}
			b, err := r.Marshal()
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "# %s, resolved (%s)\n", r.Source, r.Hash())
			_, err = g.out.Write(b)
			return err
		},
	}
}

type recipesValidateOptions struct {
	model  string
	asJSON bool
}

// validateReport is what `odyssey recipes validate --json` prints. Field names are a stable
// interface.
type validateReport struct {
	Recipe   string            `json:"recipe"`
	OK       bool              `json:"ok"`
	Hash     string            `json:"hash,omitempty"`
	Problems []recipes.Problem `json:"problems"`
	// MoreProblems counts the problems found beyond the first recipes.MaxProblems listed.
	MoreProblems int                `json:"more_problems,omitempty"`
	Modules      []recipes.Module   `json:"modules,omitempty"`
	Summary      []string           `json:"summary,omitempty"`
	Model        *validateModelInfo `json:"model,omitempty"`
}

type validateModelInfo struct {
	Dir       string `json:"dir"`
	Fallbacks int    `json:"fallbacks"`
	Skipped   int    `json:"skipped"`
}

func newRecipesValidateCmd(g *globalOptions) *cobra.Command {
	o := &recipesValidateOptions{}
	cmd := &cobra.Command{
		Use:   "validate FILE [--model DIR]",
		Short: "Check a recipe, and optionally that it fits a model",
		Long: `Validate checks a recipe file (or a preset) and prints "ok", or every problem as
file:line:column: message and exits with code 3. It also checks that the calibration file exists.

With --model it reads the model's config.json (no weights) and checks the recipe against it: the
modules each skip pattern keeps in 16 bits (a pattern matching nothing is an error), the layers
whose input dimension the group size does not divide (they fall back to per-channel, or are an
error with fallback: error), and the calibration length against the model's context.`,
		Example: "  odyssey recipes validate ci/recipe.yaml\n  odyssey recipes validate ci/recipe.yaml --model testdata/tiny-llama",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRecipesValidate(g, o, args[0])
		},
	}
	cmd.Flags().StringVar(&o.model, "model", "", "model folder whose config.json to check the recipe against")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print machine-readable JSON (also when the recipe is invalid)")
	return cmd
}

func runRecipesValidate(g *globalOptions, o *recipesValidateOptions, name string) error {
	// The model's config is read first: a missing model folder is a different mistake from
	// a bad recipe, and says nothing about the recipe.
	var cfg hf.Config
	if o.model != "" {
		c, err := hf.LoadConfig(filepath.Join(o.model, "config.json"))
		if err != nil {
			return badInput(err)
		}
		cfg = c
	}
	rep := &validateReport{Recipe: name, Problems: []recipes.Problem{}}
	r, err := recipes.Load(name)
	if err == nil {
		err = r.ValidateFiles()
	}
	var plan *recipes.Plan
	if err == nil && o.model != "" {
		plan, err = r.ValidateForModel(cfg)
	}
	if err != nil {
		var rerr *recipes.Error
		if !o.asJSON || !errors.As(err, &rerr) {
			return recipeError(g, name, err)
		}
		rep.Problems, rep.MoreProblems = rerr.Problems, rerr.More
		if werr := writeJSON(g.out, rep); werr != nil {
			return werr
		}
		return badInput(fmt.Errorf("%s: %s", name, problemCount(rerr.Total())))
	}
	rep.OK, rep.Hash = true, r.Hash()
	if plan != nil {
		rep.Modules, rep.Summary = plan.Modules, plan.Summary()
		info := &validateModelInfo{Dir: o.model, Fallbacks: len(plan.Fallbacks())}
		for _, m := range plan.Modules {
			if m.Skip != "" {
				info.Skipped++
			}
		}
		rep.Model = info
	}
	if o.asJSON {
		return writeJSON(g.out, rep)
	}
	for _, line := range rep.Summary {
		fmt.Fprintln(g.out, line)
	}
	_, err = io.WriteString(g.out, "ok\n")
	return err
}

// recipeError reports a recipe's problems one per line on stderr, where editors and CI
// annotators look for file:line:column, and returns the one-line error that ends the run
// with the bad-input exit code. Other errors (a missing file) are returned as they are.
func recipeError(g *globalOptions, name string, err error) error {
	var rerr *recipes.Error
	if !errors.As(err, &rerr) {
		return badInput(err)
	}
	for _, p := range rerr.Problems {
		fmt.Fprintln(g.errOut, p.String())
	}
	if m := rerr.MoreLine(); m != "" {
		fmt.Fprintln(g.errOut, m)
	}
	return badInput(fmt.Errorf("%s: %s", name, problemCount(rerr.Total())))
}

func problemCount(n int) string {
	if n == 1 {
		return "1 problem"
	}
	return fmt.Sprintf("%d problems", n)
}
