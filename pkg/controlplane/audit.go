package controlplane

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"

	"distro/pkg/fsutil"
)

// DefaultAuditPolicy records who did what for every request at the
// Metadata level (user, verb, resource, result; never a body), the
// request bodies of RBAC changes, and nothing for the traffic that would
// drown the log: Lease renewals, health and metrics probes, watches of
// system components, Events.
//
//go:embed audit-policy.yaml
var DefaultAuditPolicy []byte

// Audit is where the apiserver's audit log goes and the policy it uses.
type Audit struct {
	Policy, Log string
}

// PrepareAudit makes the audit log's folder and, unless the operator gave
// a policy, writes distro's to a.Policy (replaced on every start, so an
// upgrade brings its changes).
func PrepareAudit(a Audit, custom bool) error {
	if !custom {
		if err := fsutil.WriteFileAtomic(a.Policy, DefaultAuditPolicy, 0o600); err != nil {
			return fmt.Errorf("audit policy: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(a.Log), 0o700); err != nil {
		return fmt.Errorf("audit log folder: %w", err)
	}
	return nil
}

// auditFlags are the apiserver's audit settings: the log rotated at 100 MB,
// 5 old files kept (gzip-free, so `grep` works on all of them).
func auditFlags(a Audit) map[string]string {
	return map[string]string{
		"audit-policy-file":   a.Policy,
		"audit-log-path":      a.Log,
		"audit-log-maxsize":   "100",
		"audit-log-maxbackup": "5",
		"audit-log-maxage":    "30",
	}
}
