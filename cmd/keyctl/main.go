// Command keyctl administers API keys from the command line.
package main

import (
	"os"

	"github.com/keyctl/keyctl/commands"
)

func main() {
	os.Exit(commands.Main())
}
