package secretsencrypt

import (
	"context"
	"fmt"
	"io"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"k8s.io/client-go/kubernetes"
)

// canary is the Secret rotate-keys writes to see which key the apiserver
// encrypts with.
const canaryNamespace, canaryName = "kube-system", "distro-encryption-canary"

// Rotation replaces the active key with a new one on a running server.
type Rotation struct {
	ConfigPath string
	Etcd       *clientv3.Client
	Client     kubernetes.Interface
	Out        io.Writer
	// Timeout bounds the wait for the apiserver to load the new key.
	Timeout time.Duration
}

// Run rotates in steps, each safe to interrupt: a new key goes first in the
// active provider (the old ones stay, to read); once the apiserver writes
// with it, every Secret is rewritten; then the old keys, and providers no
// Secret uses any more, are dropped. Run again after an interruption, it
// finds the new key already first and finishes the job.
func (r Rotation) Run(ctx context.Context) error {
	cfg, err := Load(r.ConfigPath)
	if err != nil {
		return err
	}
	if cfg == nil || ActiveOf(cfg).Prefix == "" {
		return fmt.Errorf("secrets encryption is off (%s): start the server with --secrets-encryption to turn it on", r.ConfigPath)
	}
	providers := cfg.Resources[0].Providers
	keys := Keys(providers[0])
	if len(keys) == 1 {
		kind := Kind(providers[0])
		k, err := NewKey(kind)
		if err != nil {
			return err
		}
		setKeys(&providers[0], append([]apiserverv1.Key{k}, keys...))
		if err := Write(r.ConfigPath, cfg); err != nil {
			return err
		}
		fmt.Fprintf(r.Out, "added key %s (%s) first; the old key stays to read\n", k.Name, kind)
	} else {
		fmt.Fprintf(r.Out, "resuming: key %s is already first\n", keys[0].Name)
	}
	active := ActiveOf(cfg)
	fmt.Fprintf(r.Out, "waiting for the apiserver to encrypt with %s\n", active.Key)
	if err := r.waitActive(ctx, active); err != nil {
		return err
	}
	st, err := Scan(ctx, r.Etcd, active)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.Out, "rewriting %d of %d Secrets with %s\n", len(st.Stale), st.Total, active.Key)
	if _, err := Rewrite(ctx, r.Client, st.Stale); err != nil {
		return err
	}
	if st, err = Scan(ctx, r.Etcd, active); err != nil {
		return err
	}
	if len(st.Stale) != 0 {
		return fmt.Errorf("%d Secrets are still not stored with %s (written meanwhile with an old key?): run rotate-keys again", len(st.Stale), active.Key)
	}
	// Every Secret is on the new key: the old keys and other providers go.
	setKeys(&providers[0], []apiserverv1.Key{Keys(providers[0])[0]})
	cfg.Resources[0].Providers = []apiserverv1.ProviderConfiguration{providers[0], {Identity: &apiserverv1.IdentityConfiguration{}}}
	if err := Write(r.ConfigPath, cfg); err != nil {
		return err
	}
	fmt.Fprintf(r.Out, "done: %d Secrets stored with %s; the old keys are removed from %s\n", st.Total, active.Key, r.ConfigPath)
	return nil
}

func setKeys(p *apiserverv1.ProviderConfiguration, keys []apiserverv1.Key) {
	switch {
	case p.AESCBC != nil:
		p.AESCBC.Keys = keys
	case p.Secretbox != nil:
		p.Secretbox.Keys = keys
	case p.AESGCM != nil:
		p.AESGCM.Keys = keys
	}
}

// waitActive writes the canary Secret until its stored value shows the
// active key: the apiserver has loaded the configuration (it looks at the
// file every few seconds).
func (r Rotation) waitActive(ctx context.Context, active Active) error {
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	deadline := time.Now().Add(timeout)
	secrets := r.Client.CoreV1().Secrets(canaryNamespace)
	for i := 0; ; i++ {
		s, err := secrets.Get(ctx, canaryName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: canaryName},
				StringData: map[string]string{"purpose": "shows which key the apiserver encrypts Secrets with"}}, metav1.CreateOptions{})
		case err == nil:
			if s.Annotations == nil {
				s.Annotations = map[string]string{}
			}
			s.Annotations["distro.io/written"] = time.Now().UTC().Format(time.RFC3339Nano)
			_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("writing Secret %s/%s: %w", canaryNamespace, canaryName, err)
		}
		resp, err := r.Etcd.Get(ctx, secretsPrefix+canaryNamespace+"/"+canaryName)
		if err != nil {
			return err
		}
		if len(resp.Kvs) == 1 && active.Current(resp.Kvs[0].Value) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the apiserver still does not encrypt with %s after %s: is the server running with %s?", active.Key, timeout, r.ConfigPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
