package kubetest

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ebb-ml/ebb/internal/sibling"
)

// launch is a container's process, ready to start.
type launch struct {
	argv []string
	env  []string
	dir  string
}

// configError is a container configuration the kubelet cannot build yet: a
// missing Secret, ConfigMap or claim. Like a real kubelet, the fake one
// keeps the container waiting (reason) with an event, and retries.
type configError struct {
	reason string // CreateContainerConfigError, ContainerCreating
	event  string // the Warning event's reason: Failed, FailedMount
	msg    string
}

func (e *configError) Error() string { return e.msg }

func envConfigError(format string, args ...any) error {
	return &configError{reason: "CreateContainerConfigError", event: "Failed", msg: fmt.Sprintf(format, args...)}
}

// prepare builds the container's process: its volumes, environment,
// kubeconfig and command line, with paths, addresses and Service names
// rewritten for a process that shares this machine's file system and
// network (see the package doc).
func (k *kubelet) prepare(ctx context.Context, pod *corev1.Pod, ctr *corev1.Container) (*launch, error) {
	dir := k.podDir(pod.UID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	mounts, token, err := k.mountVolumes(ctx, pod, ctr, dir)
	if err != nil {
		return nil, err
	}
	names, vals, err := k.containerEnv(ctx, pod, ctr)
	if err != nil {
		return nil, err
	}
	argv, err := k.argv(ctr, vals)
	if err != nil {
		return nil, err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writePodKubeconfig(kubeconfig, k.host, k.caPEM, pod.Namespace, token); err != nil {
		return nil, err
	}
	rw := &rewriter{ns: pod.Namespace, podIP: pod.Status.PodIP, mounts: mounts, services: k.services}
	argv = rw.args(ctx, argv)
	env := inheritedEnv()
	env = append(env, "KUBECONFIG="+kubeconfig)
	for _, m := range mounts {
		if m.path == "/tmp" && vals["TMPDIR"] == "" {
			env = append(env, "TMPDIR="+m.dir)
		}
	}
	for _, n := range names {
		env = append(env, n+"="+rw.value(ctx, vals[n]))
	}
	return &launch{argv: argv, env: env, dir: dir}, nil
}

// inheritedEnv is the test process's environment (PATH, library paths,
// HOME ...) without what would point a pod at another cluster.
func inheritedEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "KUBECONFIG" || strings.HasPrefix(name, "KUBERNETES_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// writePodKubeconfig writes the kubeconfig a pod's process uses in place of
// in-cluster config: the apiserver, its CA, the pod's namespace, and the
// pod's service-account token (none: anonymous, as a pod without a token
// mount is).
func writePodKubeconfig(path, host string, caPEM []byte, ns, token string) error {
	user := "{}"
	if token != "" {
		user = "\n    token: " + token
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: pod
  user: %s
contexts:
- name: pod
  context:
    cluster: kubetest
    user: pod
    namespace: %s
current-context: pod
`, host, base64.StdEncoding.EncodeToString(caPEM), user, ns)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// argv builds the container's command line: $(VAR) references expanded,
// the ebb binary for "ebb" (the command, or the image's entrypoint when the
// command is empty), the ebb-cluster beside it for "ebb-cluster" (the Helm
// chart's operator and gateway), and the ebb-replica beside it for
// "ebb-replica" (or, when there is none, `ebb replica`).
func (k *kubelet) argv(ctr *corev1.Container, vars map[string]string) ([]string, error) {
	var argv []string
	if len(ctr.Command) == 0 {
		argv = append([]string{"ebb"}, ctr.Args...)
	} else {
		argv = append(append([]string{}, ctr.Command...), ctr.Args...)
	}
	for i := range argv {
		argv[i] = expand(argv[i], vars)
	}
	bin, ok := k.binary(filepath.Base(argv[0]))
	if !ok {
		return nil, fmt.Errorf("the fake kubelet runs only the ebb binaries (ebb, ebb-cluster, ebb-replica); container %q runs %q", ctr.Name, argv[0])
	}
	return append(bin, argv[1:]...), nil
}

// binary returns the local command for one of the image's binaries: ebb;
// ebb-cluster (without one beside ebb, ebb itself, whose operator and
// gateway commands then say what is missing); or ebb-replica (`ebb
// replica` without one beside ebb).
func (k *kubelet) binary(name string) ([]string, bool) {
	switch name {
	case "ebb":
		return []string{k.bin}, true
	case "ebb-cluster":
		if p, ok := sibling.Beside(k.bin, name); ok {
			return []string{p}, true
		}
		return []string{k.bin}, true
	case "ebb-replica":
		if p, ok := sibling.Beside(k.bin, name); ok {
			return []string{p}, true
		}
		return []string{k.bin, "replica"}, true
	}
	return nil, false
}

// envName is what a real kubelet accepts as a variable name from envFrom.
var envName = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)

// containerEnv resolves the container's environment as a kubelet does:
// envFrom first, then env in order, each value's $(VAR) references
// expanded against what came before. It returns the names in order and
// their values.
func (k *kubelet) containerEnv(ctx context.Context, pod *corev1.Pod, ctr *corev1.Container) ([]string, map[string]string, error) {
	vals := map[string]string{}
	var names []string
	set := func(n, v string) {
		if _, ok := vals[n]; !ok {
			names = append(names, n)
		}
		vals[n] = v
	}
	for _, ef := range ctr.EnvFrom {
		var data map[string]string
		var err error
		switch {
		case ef.SecretRef != nil:
			data, err = k.secretData(ctx, pod.Namespace, ef.SecretRef.Name, ef.SecretRef.Optional)
		case ef.ConfigMapRef != nil:
			data, err = k.configMapData(ctx, pod.Namespace, ef.ConfigMapRef.Name, ef.ConfigMapRef.Optional)
		}
		if err != nil {
			return nil, nil, err
		}
		keys := make([]string, 0, len(data))
		for key := range data {
			keys = append(keys, key)
		}
		slices.Sort(keys)
		for _, key := range keys {
			if envName.MatchString(ef.Prefix + key) {
				set(ef.Prefix+key, data[key])
			}
		}
	}
	for _, e := range ctr.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, vals))
			continue
		}
		v, ok, err := k.envValueFrom(ctx, pod, ctr, e.ValueFrom)
		if err != nil {
			return nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		if ok {
			set(e.Name, v)
		}
	}
	return names, vals, nil
}

// envValueFrom resolves one valueFrom; ok is false for an optional key
// that is missing (the variable is then unset).
func (k *kubelet) envValueFrom(ctx context.Context, pod *corev1.Pod, ctr *corev1.Container, src *corev1.EnvVarSource) (string, bool, error) {
	switch {
	case src.FieldRef != nil:
		v, err := fieldValue(pod, src.FieldRef.FieldPath)
		return v, err == nil, err
	case src.ResourceFieldRef != nil:
		v, err := k.resourceValue(ctx, pod, ctr, src.ResourceFieldRef)
		return v, err == nil, err
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		data, err := k.secretData(ctx, pod.Namespace, ref.Name, ref.Optional)
		if err != nil {
			return "", false, err
		}
		v, ok := data[ref.Key]
		if !ok && !isTrue(ref.Optional) {
			return "", false, envConfigError("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return v, ok, nil
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		data, err := k.configMapData(ctx, pod.Namespace, ref.Name, ref.Optional)
		if err != nil {
			return "", false, err
		}
		v, ok := data[ref.Key]
		if !ok && !isTrue(ref.Optional) {
			return "", false, envConfigError("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return v, ok, nil
	}
	return "", false, fmt.Errorf("the fake kubelet does not support this valueFrom: %+v", src)
}

func isTrue(b *bool) bool { return b != nil && *b }

// secretData returns a Secret's data as strings; a missing Secret is a
// configError unless optional (then it is empty).
func (k *kubelet) secretData(ctx context.Context, ns, name string, optional *bool) (map[string]string, error) {
	s, err := k.cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if isTrue(optional) {
			return nil, nil
		}
		return nil, envConfigError("secret %q not found", name)
	}
	if err != nil {
		return nil, err
	}
	data := make(map[string]string, len(s.Data))
	for key, v := range s.Data {
		data[key] = string(v)
	}
	return data, nil
}

// configMapData is secretData for a ConfigMap.
func (k *kubelet) configMapData(ctx context.Context, ns, name string, optional *bool) (map[string]string, error) {
	cm, err := k.cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if isTrue(optional) {
			return nil, nil
		}
		return nil, envConfigError("configmap %q not found", name)
	}
	if err != nil {
		return nil, err
	}
	data := make(map[string]string, len(cm.Data)+len(cm.BinaryData))
	for key, v := range cm.BinaryData {
		data[key] = string(v)
	}
	for key, v := range cm.Data {
		data[key] = v
	}
	return data, nil
}

// labelRef matches metadata.labels['KEY'] and metadata.annotations['KEY'].
var labelRef = regexp.MustCompile(`^metadata\.(labels|annotations)\['(.+)'\]$`)

// fieldValue resolves a downward-API fieldRef.
func fieldValue(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	case "status.podIPs":
		ips := make([]string, 0, len(pod.Status.PodIPs))
		for _, ip := range pod.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		if len(ips) == 0 && pod.Status.PodIP != "" {
			ips = append(ips, pod.Status.PodIP)
		}
		return strings.Join(ips, ","), nil
	case "status.hostIPs":
		ips := make([]string, 0, len(pod.Status.HostIPs))
		for _, ip := range pod.Status.HostIPs {
			ips = append(ips, ip.IP)
		}
		if len(ips) == 0 && pod.Status.HostIP != "" {
			ips = append(ips, pod.Status.HostIP)
		}
		return strings.Join(ips, ","), nil
	}
	if m := labelRef.FindStringSubmatch(path); m != nil {
		if m[1] == "labels" {
			return pod.Labels[m[2]], nil
		}
		return pod.Annotations[m[2]], nil
	}
	return "", fmt.Errorf("the fake kubelet cannot resolve fieldRef %q", path)
}

// resourceValue resolves a resourceFieldRef: the container's limit (the
// node's allocatable when unset) or request, divided by the divisor and
// rounded up, as a kubelet does.
func (k *kubelet) resourceValue(ctx context.Context, pod *corev1.Pod, ctr *corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	c := ctr
	if ref.ContainerName != "" && ref.ContainerName != ctr.Name {
		c = nil
		for i := range pod.Spec.Containers {
			if pod.Spec.Containers[i].Name == ref.ContainerName {
				c = &pod.Spec.Containers[i]
			}
		}
		if c == nil {
			return "", fmt.Errorf("resourceFieldRef: no container %q", ref.ContainerName)
		}
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") {
		return "", fmt.Errorf("the fake kubelet cannot resolve resourceFieldRef %q", ref.Resource)
	}
	list := c.Resources.Limits
	if kind == "requests" {
		list = c.Resources.Requests
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok && kind == "limits" {
		node, err := k.cs.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("resourceFieldRef %s: node %s: %w", ref.Resource, pod.Spec.NodeName, err)
		}
		q = node.Status.Allocatable[corev1.ResourceName(name)]
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if name == "cpu" {
		return fmt.Sprint(int64(math.Ceil(float64(q.MilliValue()) / float64(divisor.MilliValue())))), nil
	}
	return fmt.Sprint(int64(math.Ceil(float64(q.Value()) / float64(divisor.Value())))), nil
}

// expand replaces $(VAR) with VAR's value when vars has it, and $$ with $,
// as a kubelet does in env values, command and args; other text, and
// references to unknown variables, stay as they are.
func expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}
