// Command odyssey turns Hugging Face LLaMA-family checkpoints into W4A8 models and evaluates
// them. See the README for the two commands that matter most.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
