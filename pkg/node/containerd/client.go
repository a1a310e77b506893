package containerd

import (
	"context"
	"time"

	"github.com/containerd/containerd/v2/client"
)

// Namespace is the containerd namespace the kubelet's pods live in.
const Namespace = "k8s.io"

// New connects to distro's containerd.
func New(socket string) (*client.Client, error) {
	return client.New(socket, client.WithDefaultNamespace(Namespace), client.WithTimeout(2*time.Second))
}

// Ping checks that containerd answers on socket.
func Ping(ctx context.Context, socket string) error {
	c, err := New(socket)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = c.Version(ctx)
	return err
}
