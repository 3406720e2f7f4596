package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"
)

// globalOptions are the flags every command shares.
type globalOptions struct {
	in     io.Reader
	out    io.Writer
	errOut io.Writer

	// ctx is the command's context (cancelled by SIGINT and SIGTERM).
	ctx context.Context
	// maxBundle is --max-bundle-size as given, maxBundleBytes the same in bytes.
	maxBundle      string
	maxBundleBytes int64

	cpuProfile  string
	stopProfile func() // ends the CPU profile also when the command fails

	// trailer holds notes printed after the error line when the command fails (what was
	// cleaned up, how to resume), so the cause always comes first.
	trailer []string
}

// trail records a note for after the error line (see globalOptions.trailer).
func (g *globalOptions) trail(format string, a ...any) {
	g.trailer = append(g.trailer, fmt.Sprintf(format, a...))
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
		newRuntimeCmd(g),
		newBenchCmd(g),
		newVerifyCmd(g),
		newSimCmd(g),
	)
	// --cpuprofile is for the developers measuring quantize's throughput; it is hidden
	// because it is no part of the tool's contract.
	var prof *os.File
	root.PersistentFlags().StringVar(&g.cpuProfile, "cpuprofile", "", "write a CPU profile (go tool pprof) to this file")
	_ = root.PersistentFlags().MarkHidden("cpuprofile")
	root.PersistentFlags().StringVar(&g.maxBundle, "max-bundle-size", "64GiB", "the most a .tar.zst bundle may unpack to (into $TMPDIR)")
	root.PersistentPreRunE = func(c *cobra.Command, args []string) error {
		g.ctx = c.Context()
		n, err := parseByteSize(g.maxBundle)
		if err != nil {
			return usageErrorf("--max-bundle-size: %v", err)
		}
		g.maxBundleBytes = n
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

// requireSubcommand makes every command group (eval, recipes, testdata, runtime, bench) reject an unknown
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

// exitCleanups are what a forced exit (a second signal) still removes: bundles unpacked into
// $TMPDIR. Keyed by registration.
var exitCleanups struct {
	sync.Mutex
	next int
	fns  map[int]func()
}

// onForcedExit registers fn to run if the process is forced to exit, and returns the
// function that unregisters it.
func onForcedExit(fn func()) (unregister func()) {
	exitCleanups.Lock()
	defer exitCleanups.Unlock()
	if exitCleanups.fns == nil {
		exitCleanups.fns = map[int]func(){}
	}
	id := exitCleanups.next
	exitCleanups.next++
	exitCleanups.fns[id] = fn
	return func() {
		exitCleanups.Lock()
		delete(exitCleanups.fns, id)
		exitCleanups.Unlock()
	}
}

func runExitCleanups() {
	exitCleanups.Lock()
	defer exitCleanups.Unlock()
	for _, fn := range exitCleanups.fns {
		fn()
	}
}

// lastSignal is the signal the latest run caught (nil: none), for tests.
var lastSignal atomic.Pointer[os.Signal]

// run executes the CLI and returns the process exit code. It is main without os.Exit, so
// tests can drive the whole CLI in-process.
func run(args []string, in io.Reader, out, errOut io.Writer) int {
	// SIGINT (Ctrl-C) and SIGTERM (kill, a CI job's timeout, a container stopping) both
	// cancel the context: commands stop at the next check, remove what is half-written (or
	// keep quantize's finished layers for --resume) and say so.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var got atomic.Value // os.Signal
	lastSignal.Store(nil)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case s := <-sigs:
			cancel()
			got.Store(s)
			lastSignal.Store(&s)
		case <-done:
			return
		}
		// A second signal means the user will not wait for the cleanup of a command that
		// is slow to stop (or does not check for cancellation): remove the temporary
		// folders and exit at once, as the default action would have.
		select {
		case s := <-sigs:
			runExitCleanups()
			code := exitInterrupted
			if s == syscall.SIGTERM {
				code = exitTerminated
			}
			fmt.Fprintf(errOut, "odyssey: second signal (%v): exiting now\n", s)
			os.Exit(code)
		case <-done:
		}
	}()
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
	code := exitCodeOf(err)
	if isCobraUsageError(err) {
		code = exitUsage
	}
	if code == exitInterrupted {
		name := "interrupt"
		if s, ok := got.Load().(os.Signal); ok {
			if s == syscall.SIGTERM {
				name, code = "SIGTERM", exitTerminated
			} else {
				name = "SIGINT"
			}
		}
		fmt.Fprintf(errOut, "odyssey: stopped by %s (%s)\n", name, err)
	} else {
		fmt.Fprintf(errOut, "odyssey: %s\n", err)
	}
	for _, t := range g.trailer {
		fmt.Fprintf(errOut, "odyssey: %s\n", t)
	}
	return code
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
