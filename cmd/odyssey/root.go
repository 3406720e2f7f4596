package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"
)

// globalOptions are the flags every command shares.
type globalOptions struct {
	in     io.Reader
	out    io.Writer
	errOut io.Writer

	cpuProfile  string
	stopProfile func() // ends the CPU profile also when the command fails
}

func newRootCmd(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:   "odyssey",
		Short: "Post-training W4A8 quantization for LLaMA-family models",
		Long: `Odyssey turns a Hugging Face FP16/BF16 checkpoint (LLaMA, Mistral, Qwen2) into a W4A8
model and checks it: perplexity and KL divergence on CPU, speed on a GPU.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(g.in)
	root.SetOut(g.out)
	root.SetErr(g.errOut)
	// Flag errors are usage errors (exit 2), not failures.
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErrorf("%v\nRun '%s --help' for usage.", err, c.CommandPath())
	})
	root.AddCommand(
		newVersionCmd(g),
		newInspectCmd(g),
		newTokenizeCmd(g),
		newEvalCmd(g),
		newRecipesCmd(g),
		newTestdataCmd(g),
		newBundleCmd(g),
		newQuantizeCmd(g),
		newSimCmd(g),
	)
	// --cpuprofile is for the developers measuring quantize's throughput; it is hidden
	// because it is no part of the tool's contract.
	var prof *os.File
	root.PersistentFlags().StringVar(&g.cpuProfile, "cpuprofile", "", "write a CPU profile (go tool pprof) to this file")
	_ = root.PersistentFlags().MarkHidden("cpuprofile")
	root.PersistentPreRunE = func(c *cobra.Command, args []string) error {
		if g.cpuProfile == "" {
			return nil
		}
		f, err := os.Create(g.cpuProfile)
		if err != nil {
			return usageErrorf("--cpuprofile: %v", err)
		}
		prof = f
		return pprof.StartCPUProfile(f)
	}
	root.PersistentPostRun = func(c *cobra.Command, args []string) { stopProfile(&prof) }
	g.stopProfile = func() { stopProfile(&prof) }
	requireSubcommand(root)
	return root
}

func stopProfile(f **os.File) {
	if *f != nil {
		pprof.StopCPUProfile()
		(*f).Close()
		*f = nil
	}
}

// requireSubcommand makes every command group (eval, recipes, testdata) reject an unknown
// subcommand with a usage error; by default cobra prints help and exits 0, which hides typos
// in scripts.
func requireSubcommand(c *cobra.Command) {
	for _, sub := range c.Commands() {
		requireSubcommand(sub)
	}
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q for %q\nRun '%s --help' for usage.", args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return cmd.Help()
		}
	}
}

// run executes the CLI and returns the process exit code. It is main without os.Exit, so
// tests can drive the whole CLI in-process.
func run(args []string, in io.Reader, out, errOut io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	g := &globalOptions{in: in, out: out, errOut: errOut}
	root := newRootCmd(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if g.stopProfile != nil {
		g.stopProfile()
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(errOut, "odyssey: %s\n", err)
	if isCobraUsageError(err) {
		return exitUsage
	}
	return exitCodeOf(err)
}

// isCobraUsageError recognises the errors cobra itself returns for a malformed command line
// (it has no error types for them), so they exit with the usage code rather than as failures.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "required flag(s)",
		"accepts ", "requires at least", "requires at most",
		"if any flags in the group"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
