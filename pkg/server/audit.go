package server

import (
	"distro/pkg/config"
	"distro/pkg/controlplane"
	"distro/pkg/datadir"
)

// auditSettings are the apiserver's audit policy (--audit-policy-file, or
// distro's written at start) and log.
func auditSettings(cfg *config.Server, paths datadir.Server) controlplane.Audit {
	policy := paths.AuditPolicy
	if cfg.AuditPolicyFile != "" {
		policy = cfg.AuditPolicyFile
	}
	return controlplane.Audit{Policy: policy, Log: paths.AuditLog}
}

// ensureAudit writes distro's audit policy (unless the operator gave one)
// and the log's folder.
func ensureAudit(cfg *config.Server, paths datadir.Server) error {
	return controlplane.PrepareAudit(auditSettings(cfg, paths), cfg.AuditPolicyFile != "")
}
