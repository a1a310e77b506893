package netpol

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestChangeFilters(t *testing.T) {
	base := mkPod("default", "web", node, []string{web}, map[string]string{"app": "web"})
	for name, tc := range map[string]struct {
		mod  func(p *corev1.Pod)
		want bool
	}{
		"status condition only": {func(p *corev1.Pod) { p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady}} }, false},
		"resource version only": {func(p *corev1.Pod) { p.ResourceVersion = "2" }, false},
		"label":                 {func(p *corev1.Pod) { p.Labels = map[string]string{"app": "db"} }, true},
		"IP":                    {func(p *corev1.Pod) { p.Status.PodIPs = nil }, true},
		"phase":                 {func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }, true},
		"host network":          {func(p *corev1.Pod) { p.Spec.HostNetwork = true }, true},
		"named port": {func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 80}}
		}, true},
	} {
		cur := base.DeepCopy()
		tc.mod(cur)
		if got := podChanged(base, cur); got != tc.want {
			t.Errorf("%s: podChanged = %v, want %v", name, got, tc.want)
		}
	}
	if !podChanged(nil, base) || !podChanged("junk", base) || !podChanged(base, (*corev1.Pod)(nil)) {
		t.Error("odd objects must count as a change")
	}
	a, b := mkNS("a", nil), mkNS("a", map[string]string{"team": "x"})
	if namespaceChanged(a, a.DeepCopy()) || !namespaceChanged(a, b) || !namespaceChanged(nil, b) {
		t.Error("namespaceChanged")
	}
}
