package controlplane

import (
	"context"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"distro/pkg/pki"
)

// FlannelUser is the pod network's identity.
const FlannelUser = pki.FlannelUser

// KubeletAPIUser is the identity the apiserver uses towards kubelets.
const KubeletAPIUser = "system:kube-apiserver-kubelet-client"

var managedBy = map[string]string{"app.kubernetes.io/managed-by": "distro"}

// bootstrapRoles are the cluster roles distro adds to upstream's bootstrap
// policy.
func bootstrapRoles() []*rbacv1.ClusterRole {
	return []*rbacv1.ClusterRole{{
		// The pod network reads all nodes and publishes its own VXLAN
		// endpoint in node annotations (the Node authorizer only lets a
		// kubelet read its own Node).
		ObjectMeta: metav1.ObjectMeta{Name: "distro:flannel", Labels: managedBy},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch", "patch"}},
			{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch"}},
		},
	}, {
		// Each node's NetworkPolicy controller (same identity as the pod
		// network) reads every pod, namespace and policy.
		ObjectMeta: metav1.ObjectMeta{Name: "distro:network-policy", Labels: managedBy},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "namespaces"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"list", "watch"}},
		},
	}}
}

// bootstrapBindings are the RBAC bindings distro adds on top of upstream's
// bootstrap policy.
func bootstrapBindings() []*rbacv1.ClusterRoleBinding {
	return []*rbacv1.ClusterRoleBinding{{
		ObjectMeta: metav1.ObjectMeta{Name: "distro:flannel", Labels: managedBy},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "distro:flannel"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: FlannelUser}},
	}, {
		ObjectMeta: metav1.ObjectMeta{Name: "distro:network-policy", Labels: managedBy},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "distro:network-policy"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: FlannelUser}},
	}, {
		// kubectl logs/exec/port-forward: the apiserver calls kubelets.
		ObjectMeta: metav1.ObjectMeta{Name: "distro:kube-apiserver-kubelet-api-admin", Labels: managedBy},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: KubeletAPIUser}},
	}}
}

// EnsureRBAC creates or updates distro's bootstrap RBAC.
func EnsureRBAC(ctx context.Context, client kubernetes.Interface) error {
	roles := client.RbacV1().ClusterRoles()
	for _, want := range bootstrapRoles() {
		got, err := roles.Get(ctx, want.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = roles.Create(ctx, want, metav1.CreateOptions{})
		case err == nil:
			want.ResourceVersion = got.ResourceVersion
			_, err = roles.Update(ctx, want, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("bootstrap RBAC %s: %w", want.Name, err)
		}
	}
	api := client.RbacV1().ClusterRoleBindings()
	for _, want := range bootstrapBindings() {
		got, err := api.Get(ctx, want.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = api.Create(ctx, want, metav1.CreateOptions{})
		case err == nil:
			want.ResourceVersion = got.ResourceVersion
			_, err = api.Update(ctx, want, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("bootstrap RBAC %s: %w", want.Name, err)
		}
	}
	return nil
}
