package kubetest

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// serviceAccountPath is where a pod's service-account token is mounted.
const serviceAccountPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// mount is a container path and the local directory (or file) behind it.
type mount struct {
	path string // mountPath in the container
	dir  string // on this machine
}

func mountError(vol, format string, args ...any) error {
	return &configError{reason: "ContainerCreating", event: "FailedMount",
		msg: fmt.Sprintf("MountVolume.SetUp failed for volume %q : ", vol) + fmt.Sprintf(format, args...)}
}

// mountVolumes maps each volume mount of ctr to a local directory,
// creating it (and writing the files of configMap, secret, projected and
// downwardAPI volumes). It returns the mounts, longest path first, and the
// service-account token mounted at serviceAccountPath ("" when none).
func (k *kubelet) mountVolumes(ctx context.Context, pod *corev1.Pod, ctr *corev1.Container, podDir string) ([]mount, string, error) {
	dirs := map[string]string{} // volume name → local directory
	tokens := map[string]string{}
	var mounts []mount
	token := ""
	for _, vm := range ctr.VolumeMounts {
		dir, ok := dirs[vm.Name]
		if !ok {
			i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
			if i < 0 {
				return nil, "", fmt.Errorf("volume mount %q: the pod has no such volume", vm.Name)
			}
			var err error
			if dir, tokens[vm.Name], err = k.volumeDir(ctx, pod, &pod.Spec.Volumes[i], podDir); err != nil {
				return nil, "", err
			}
			dirs[vm.Name] = dir
		}
		if vm.SubPath != "" {
			sub := path.Clean(vm.SubPath)
			if path.IsAbs(sub) || sub == ".." || strings.HasPrefix(sub, "../") {
				return nil, "", fmt.Errorf("volume mount %q: subPath %q leaves the volume", vm.Name, vm.SubPath)
			}
			dir = filepath.Join(dir, sub)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, "", err
			}
		}
		p := path.Clean(vm.MountPath)
		mounts = append(mounts, mount{path: p, dir: dir})
		if p == serviceAccountPath && vm.SubPath == "" {
			token = tokens[vm.Name]
		}
	}
	slices.SortStableFunc(mounts, func(a, b mount) int { return len(b.path) - len(a.path) })
	k.mu.Lock()
	for _, m := range mounts {
		k.locals[m.dir] = m.path
	}
	k.mu.Unlock()
	return mounts, token, nil
}

// hostPathKey is the node path a hostPath volume's directory is keyed by:
// its path, except that a path the kubelet rewrote for another pod's
// process (an operator's --replica-artifact-cache-path under its own data
// mount, passed on into the replica pods it creates) stands for the path
// that process saw. So a node-level directory is the same whichever pod
// wrote the spec that names it.
func (k *kubelet) hostPathKey(p string) string {
	p = filepath.Clean(p)
	k.mu.Lock()
	defer k.mu.Unlock()
	best := ""
	for dir := range k.locals {
		if (p == dir || strings.HasPrefix(p, dir+"/")) && len(dir) > len(best) {
			best = dir
		}
	}
	if best == "" {
		return p
	}
	return path.Join(k.locals[best], strings.TrimPrefix(p, best))
}

// volumeDir returns the local directory of one volume:
//
//   - hostPath: one per (node, path), shared by the pods of the node
//     (the path as hostPathKey gives it);
//   - emptyDir: one per pod, removed with the pod;
//   - persistentVolumeClaim: one per (namespace, claim);
//   - configMap, secret, projected, downwardAPI: one per pod, with the
//     files written at each start in a kubelet's layout (writeFiles);
//     secret and configMap ones are updated while the process runs
//     (refreshVolumes).
//
// It also returns the service-account token a projected volume holds.
func (k *kubelet) volumeDir(ctx context.Context, pod *corev1.Pod, v *corev1.Volume, podDir string) (string, string, error) {
	own := filepath.Join(podDir, "volumes", v.Name)
	switch {
	case v.HostPath != nil:
		dir := filepath.Join(k.dir, "volumes", "hostpath", pod.Spec.NodeName, k.hostPathKey("/"+v.HostPath.Path))
		if t := v.HostPath.Type; t != nil && (*t == corev1.HostPathFile || *t == corev1.HostPathFileOrCreate) {
			if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
				return "", "", err
			}
			f, err := os.OpenFile(dir, os.O_CREATE|os.O_RDONLY, 0o644)
			if err != nil {
				return "", "", err
			}
			f.Close()
			return dir, "", nil
		}
		return dir, "", os.MkdirAll(dir, 0o755)
	case v.EmptyDir != nil:
		return own, "", os.MkdirAll(own, 0o755)
	case v.PersistentVolumeClaim != nil:
		claim := v.PersistentVolumeClaim.ClaimName
		if _, err := k.cs.CoreV1().PersistentVolumeClaims(pod.Namespace).Get(ctx, claim, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return "", "", mountError(v.Name, "persistentvolumeclaim %q not found", claim)
		} else if err != nil {
			return "", "", err
		}
		dir := filepath.Join(k.dir, "volumes", "pvc", pod.Namespace, claim)
		return dir, "", os.MkdirAll(dir, 0o755)
	case v.ConfigMap != nil:
		data, err := k.configMapData(ctx, pod.Namespace, v.ConfigMap.Name, v.ConfigMap.Optional)
		if err != nil {
			return "", "", mountError(v.Name, "%v", err)
		}
		files, err := keyFiles(v.Name, data, v.ConfigMap.Items, v.ConfigMap.Optional, "configmap", v.ConfigMap.Name)
		if err != nil {
			return "", "", err
		}
		return own, "", writeFiles(own, files, v.ConfigMap.DefaultMode)
	case v.Secret != nil:
		data, err := k.secretData(ctx, pod.Namespace, v.Secret.SecretName, v.Secret.Optional)
		if err != nil {
			return "", "", mountError(v.Name, "%v", err)
		}
		files, err := keyFiles(v.Name, data, v.Secret.Items, v.Secret.Optional, "secret", v.Secret.SecretName)
		if err != nil {
			return "", "", err
		}
		return own, "", writeFiles(own, files, v.Secret.DefaultMode)
	case v.DownwardAPI != nil:
		files, err := k.downwardFiles(ctx, pod, v.DownwardAPI.Items)
		if err != nil {
			return "", "", err
		}
		return own, "", writeFiles(own, files, v.DownwardAPI.DefaultMode)
	case v.Projected != nil:
		files, token, err := k.projectedFiles(ctx, pod, v)
		if err != nil {
			return "", "", err
		}
		return own, token, writeFiles(own, files, v.Projected.DefaultMode)
	}
	return "", "", fmt.Errorf("volume %q: the fake kubelet supports hostPath, emptyDir, persistentVolumeClaim, configMap, secret, projected and downwardAPI volumes only", v.Name)
}

// keyFiles maps a ConfigMap's or Secret's keys to files: every key, or
// the listed items (a missing one is an error unless optional).
func keyFiles(vol string, data map[string]string, items []corev1.KeyToPath, optional *bool, kind, name string) (map[string]string, error) {
	files := map[string]string{}
	if len(items) == 0 {
		for key, v := range data {
			files[key] = v
		}
		return files, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if isTrue(optional) {
				continue
			}
			return nil, mountError(vol, "configuration of %s %q has no key %q", kind, name, it.Key)
		}
		files[it.Path] = v
	}
	return files, nil
}

// downwardFiles resolves downwardAPI items to files.
func (k *kubelet) downwardFiles(ctx context.Context, pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile) (map[string]string, error) {
	files := map[string]string{}
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = fieldValue(pod, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			ctr := podContainer(pod)
			if ctr == nil {
				return nil, fmt.Errorf("downwardAPI %s: no container", it.Path)
			}
			v, err = k.resourceValue(ctx, pod, ctr, it.ResourceFieldRef)
		}
		if err != nil {
			return nil, fmt.Errorf("downwardAPI %s: %w", it.Path, err)
		}
		files[it.Path] = v
	}
	return files, nil
}

// projectedFiles resolves a projected volume's sources (the one admission
// adds for service-account tokens among them): a token requested for the
// pod's service account, bound to the pod, as a kubelet requests it.
func (k *kubelet) projectedFiles(ctx context.Context, pod *corev1.Pod, v *corev1.Volume) (map[string]string, string, error) {
	files := map[string]string{}
	token := ""
	for _, src := range v.Projected.Sources {
		var more map[string]string
		var err error
		switch {
		case src.ServiceAccountToken != nil:
			var tok string
			tok, err = k.serviceAccountToken(ctx, pod, src.ServiceAccountToken)
			if err != nil {
				return nil, "", mountError(v.Name, "%v", err)
			}
			if src.ServiceAccountToken.Audience == "" {
				token = tok
			}
			more = map[string]string{src.ServiceAccountToken.Path: tok}
		case src.ConfigMap != nil:
			var data map[string]string
			if data, err = k.configMapData(ctx, pod.Namespace, src.ConfigMap.Name, src.ConfigMap.Optional); err != nil {
				return nil, "", mountError(v.Name, "%v", err)
			}
			more, err = keyFiles(v.Name, data, src.ConfigMap.Items, src.ConfigMap.Optional, "configmap", src.ConfigMap.Name)
		case src.Secret != nil:
			var data map[string]string
			if data, err = k.secretData(ctx, pod.Namespace, src.Secret.Name, src.Secret.Optional); err != nil {
				return nil, "", mountError(v.Name, "%v", err)
			}
			more, err = keyFiles(v.Name, data, src.Secret.Items, src.Secret.Optional, "secret", src.Secret.Name)
		case src.DownwardAPI != nil:
			more, err = k.downwardFiles(ctx, pod, src.DownwardAPI.Items)
		default:
			err = fmt.Errorf("volume %q: the fake kubelet does not support this projected source: %+v", v.Name, src)
		}
		if err != nil {
			return nil, "", err
		}
		for p, c := range more {
			files[p] = c
		}
	}
	return files, token, nil
}

// serviceAccountToken requests a token for the pod's service account,
// bound to the pod.
func (k *kubelet) serviceAccountToken(ctx context.Context, pod *corev1.Pod, p *corev1.ServiceAccountTokenProjection) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: p.ExpirationSeconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if p.Audience != "" {
		req.Spec.Audiences = []string{p.Audience}
	}
	tr, err := k.cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for service account %s/%s: %w", pod.Namespace, sa, err)
	}
	return tr.Status.Token, nil
}

// dataLink is the symlink in a configMap, secret, projected or downwardAPI
// volume's directory that points at the directory holding its current
// files, as a kubelet's atomic writer lays them out: each top-level name
// in the volume is a symlink through it, so that swapping dataLink (one
// rename) replaces every file at once.
const dataLink = "..data"

// writeFiles writes files (relative paths) into dir as a kubelet does: into
// a fresh hidden directory, which dataLink then points to with one rename,
// each top-level name a symlink through dataLink. A reader never sees a
// half-written set (a certificate with the previous key). It replaces what
// an earlier call wrote, and removes names files no longer has.
func writeFiles(dir string, files map[string]string, mode *int32) error {
	perm := os.FileMode(0o644)
	if mode != nil {
		perm = os.FileMode(*mode) & 0o777
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := os.MkdirTemp(dir, "..data_")
	if err != nil {
		return err
	}
	top := map[string]bool{}
	for p, content := range files {
		clean := path.Clean(p)
		if path.IsAbs(clean) || strings.HasPrefix(clean, "..") {
			_ = os.RemoveAll(data)
			return fmt.Errorf("volume file %q leaves the volume or starts with \"..\"", p)
		}
		full := filepath.Join(data, clean)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(content), perm|0o200); err != nil {
			return err
		}
		top[strings.SplitN(clean, "/", 2)[0]] = true
	}
	tmp := filepath.Join(dir, dataLink+"_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(data), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataLink)); err != nil {
		return err
	}
	for name := range top {
		link := filepath.Join(dir, name)
		if fi, err := os.Lstat(link); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			continue
		}
		_ = os.RemoveAll(link) // a file an older layout wrote
		if err := os.Symlink(filepath.Join(dataLink, name), link); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == dataLink || name == filepath.Base(data):
		case strings.HasPrefix(name, ".."), !top[name]:
			_ = os.RemoveAll(filepath.Join(dir, name)) // an older set, or a key gone
		}
	}
	return nil
}

// sameFiles reports whether dir holds exactly files (as writeFiles wrote
// them).
func sameFiles(dir string, files map[string]string) bool {
	top := map[string]bool{}
	for p, content := range files {
		b, err := os.ReadFile(filepath.Join(dir, path.Clean(p)))
		if err != nil || string(b) != content {
			return false
		}
		top[strings.SplitN(path.Clean(p), "/", 2)[0]] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	n := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "..") {
			n++
		}
	}
	return n == len(top)
}

// volumeRefresh is how often refreshVolumes reads the sources of secret
// and configMap volumes (a kubelet's sync period is about a minute; tests
// cannot wait that long).
const volumeRefresh = 500 * time.Millisecond

// refreshVolumes keeps the files of the container's secret and configMap
// volumes in line with their Secrets and ConfigMaps while it runs, as a
// kubelet does: a change is swapped in at once (writeFiles), so a process
// that rereads its files (a renewed certificate, a rotated token) sees it
// without a restart. A source that is gone or cannot be read leaves the
// files as they are. Projected and downwardAPI volumes keep what was
// written at start. It returns when ctx ends.
func (k *kubelet) refreshVolumes(ctx context.Context, pod *corev1.Pod, ctr *corev1.Container) {
	var vols []*corev1.Volume
	for _, vm := range ctr.VolumeMounts {
		i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
		if i < 0 || slices.Contains(vols, &pod.Spec.Volumes[i]) {
			continue
		}
		if v := &pod.Spec.Volumes[i]; v.Secret != nil || v.ConfigMap != nil {
			vols = append(vols, v)
		}
	}
	if len(vols) == 0 {
		return
	}
	t := time.NewTicker(volumeRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, v := range vols {
			var data map[string]string
			var err error
			var items []corev1.KeyToPath
			var optional *bool
			var mode *int32
			kind, name := "secret", ""
			if s := v.Secret; s != nil {
				name, items, optional, mode = s.SecretName, s.Items, s.Optional, s.DefaultMode
				data, err = k.secretData(ctx, pod.Namespace, name, optional)
			} else {
				kind, name, items, optional, mode = "configmap", v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional, v.ConfigMap.DefaultMode
				data, err = k.configMapData(ctx, pod.Namespace, name, optional)
			}
			if err != nil {
				continue
			}
			files, err := keyFiles(v.Name, data, items, optional, kind, name)
			if err != nil {
				continue
			}
			dir := filepath.Join(k.podDir(pod.UID), "volumes", v.Name)
			if sameFiles(dir, files) {
				continue
			}
			if err := writeFiles(dir, files, mode); err != nil {
				k.logf("fake kubelet: pod %s/%s: update volume %s: %v", pod.Namespace, pod.Name, v.Name, err)
				continue
			}
			k.logf("fake kubelet: pod %s/%s: volume %s updated from %s %s", pod.Namespace, pod.Name, v.Name, kind, name)
		}
	}
}
