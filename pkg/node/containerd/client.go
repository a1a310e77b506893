package containerd

import (
	"context"
	"time"

	"github.com/containerd/containerd/v2/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Namespace is the containerd namespace the kubelet's pods live in.
const Namespace = "k8s.io"

// New connects to distro's containerd.
func New(socket string) (*client.Client, error) {
	return client.New(socket, client.WithDefaultNamespace(Namespace), client.WithTimeout(2*time.Second))
}

// Ping checks that containerd answers on socket, its CRI service included:
// the CRI plugin finishes initialising after containerd's own API answers
// (later still when it recovers many containers after a restart), and the
// kubelet gives up at start if the CRI says "not initialized yet".
func Ping(ctx context.Context, socket string) error {
	c, err := New(socket)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err = c.Version(ctx); err != nil {
		return err
	}
	conn, ok := c.Conn().(*grpc.ClientConn)
	if !ok {
		return nil
	}
	_, err = runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{})
	return err
}

// DrainContainerEvents reads containerd's CRI container events and drops
// them, until ctx ends. While nobody subscribes, containerd keeps each event
// for five minutes (each carries its pod sandbox's whole status), and the
// kubelet subscribes only with its alpha EventedPLEG, off here: after a
// burst of pods their events sat in containerd's heap for those minutes.
func DrainContainerEvents(ctx context.Context, socket string) {
	for ctx.Err() == nil {
		if conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
			stream, err := runtimeapi.NewRuntimeServiceClient(conn).GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
			for err == nil {
				_, err = stream.Recv()
			}
			conn.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
