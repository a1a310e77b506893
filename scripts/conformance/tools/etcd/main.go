// Command etcd is the etcd server, as etcd's own main package
// (go.etcd.io/etcd/v3, whose go.mod replace directives keep it from being
// built as a dependency) builds it: etcdmain.Main(os.Args).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
