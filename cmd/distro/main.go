// distro: a Kubernetes distribution in one binary.
package main

import (
	"os"

	"distro/pkg/cli"
)

func main() {
	os.Exit(cli.Main())
}
