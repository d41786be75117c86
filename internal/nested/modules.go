package nested

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ember-vmm/ember/internal/testguest"
)

// ErrModules is returned (wrapped) when the L1 kernel modules cannot be
// found or prepared.
var ErrModules = errors.New("nested: kernel modules")

// kvmModule is what L1 needs for /dev/kvm: TCG emulates AMD's SVM (never
// Intel's VMX), so kvm_amd, whatever the host's CPU.
const kvmModule = "kvm_amd"

// optionalModules may be asked for with Options.Modules (networks for
// inner tests). The cache holds them when the kernel has them as modules.
var optionalModules = []string{"tun", "veth", "bridge"}

// modName is a module's name as the kernel spells it: file name without
// ".ko", dashes read as underscores.
func modName(file string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(file), ".ko"), "-", "_")
}

// modInfoDepends reads the "depends=" entry of a module's .modinfo section.
func modInfoDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrModules, path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%w: %s has no .modinfo section", ErrModules, path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrModules, path, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d = strings.TrimSpace(d); d != "" {
					deps = append(deps, modName(d))
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}

// moduleIndex maps module names to .ko paths under a module tree.
func moduleIndex(tree string) (map[string]string, error) {
	idx := map[string]string{}
	err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			idx[modName(p)] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrModules, err)
	}
	return idx, nil
}

// loadOrder returns want and everything it depends on, each after its
// dependencies. depends returns a module's direct dependencies.
func loadOrder(want []string, known func(string) bool, depends func(string) ([]string, error)) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string, from []string) error
	visit = func(n string, from []string) error {
		switch state[n] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("%w: dependency cycle %s -> %s", ErrModules, strings.Join(from, " -> "), n)
		}
		if !known(n) {
			if len(from) > 0 {
				return fmt.Errorf("%w: %s needs %s, which the kernel package lacks", ErrModules, from[len(from)-1], n)
			}
			return fmt.Errorf("%w: no module %s in the kernel package", ErrModules, n)
		}
		state[n] = 1
		deps, err := depends(n)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, append(from[:len(from):len(from)], n)); err != nil {
				return err
			}
		}
		state[n] = 2
		order = append(order, n)
		return nil
	}
	for _, n := range want {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// moduleCache holds the .ko files L1 may load, flat, plus a "<name>.load"
// file for kvm_amd and each optional module listing the .ko files to load
// for it in dependency order. Built once per kernel package version from
// the .deb guest/build.sh keeps, so no change to the test guest is needed.
type moduleCache struct {
	Dir string
}

// debPath is where guest/build.sh keeps the kernel package it used.
func debPath(a testguest.Assets) string {
	return filepath.Join(a.Dir, "cache",
		a.KernelPackage+"_"+strings.ReplaceAll(a.KernelPackageVersion, ":", "%3a")+"_amd64.deb")
}

// cacheRoot is where the harness keeps what it derives from the test guest.
func cacheRoot(a testguest.Assets) string {
	if d := os.Getenv(EnvCache); d != "" {
		return d
	}
	return filepath.Join(a.Dir, "nested")
}

// lockFile takes an exclusive flock on path, retrying on EINTR.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("flock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// prepareModules returns the module cache for the guest's kernel, building
// it under a lock if missing. The "complete" file is written last, so a
// half-built cache (a killed run) is rebuilt rather than used.
func prepareModules(ctx context.Context, a testguest.Assets) (moduleCache, error) {
	root := cacheRoot(a)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return moduleCache{}, fmt.Errorf("%w: %v", ErrModules, err)
	}
	key := strings.NewReplacer("/", "_", ":", "%3a").Replace(a.KernelVersion + "_" + a.KernelPackageVersion)
	mc := moduleCache{Dir: filepath.Join(root, "modules-v2-"+key)}
	if _, err := os.Stat(filepath.Join(mc.Dir, "complete")); err == nil {
		return mc, nil
	}
	unlock, err := lockFile(filepath.Join(root, ".lock"))
	if err != nil {
		return moduleCache{}, fmt.Errorf("%w: %v", ErrModules, err)
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(mc.Dir, "complete")); err == nil {
		return mc, nil // another process built it while we waited
	}
	deb := debPath(a)
	if _, err := os.Stat(deb); err != nil {
		return moduleCache{}, fmt.Errorf("%w: the kernel package guest/build.sh used is gone (%v); run guest/build.sh --force", ErrModules, err)
	}
	work, err := os.MkdirTemp(root, ".modules-")
	if err != nil {
		return moduleCache{}, fmt.Errorf("%w: %v", ErrModules, err)
	}
	defer os.RemoveAll(work)
	out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, filepath.Join(work, "pkg")).CombinedOutput()
	if err != nil {
		return moduleCache{}, fmt.Errorf("%w: dpkg-deb -x %s: %v: %s", ErrModules, deb, err, bytes.TrimSpace(out))
	}
	tree := filepath.Join(work, "pkg", "lib", "modules", a.KernelVersion)
	idx, err := moduleIndex(tree)
	if err != nil {
		return moduleCache{}, err
	}
	if len(idx) == 0 {
		return moduleCache{}, fmt.Errorf("%w: no modules under %s in %s (compressed modules are not supported)", ErrModules, tree, deb)
	}
	stage := filepath.Join(work, "out")
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return moduleCache{}, fmt.Errorf("%w: %v", ErrModules, err)
	}
	known := func(n string) bool { _, ok := idx[n]; return ok }
	depends := func(n string) ([]string, error) { return modInfoDepends(idx[n]) }
	for _, want := range append([]string{kvmModule}, optionalModules...) {
		if want != kvmModule && !known(want) {
			continue // built in, or absent: nothing to load
		}
		order, err := loadOrder([]string{want}, known, depends)
		if err != nil {
			return moduleCache{}, err
		}
		var list strings.Builder
		for _, n := range order {
			file := filepath.Base(idx[n])
			if err := copyFile(filepath.Join(stage, file), idx[n]); err != nil && !errors.Is(err, fs.ErrExist) {
				return moduleCache{}, fmt.Errorf("%w: %v", ErrModules, err)
			}
			list.WriteString(file + "\n")
		}
		if err := os.WriteFile(filepath.Join(stage, want+".load"), []byte(list.String()), 0o644); err != nil {
			return moduleCache{}, fmt.Errorf("%w: %v", ErrModules, err)
		}
	}
	if err := os.WriteFile(filepath.Join(stage, "complete"), []byte(deb+"\n"), 0o644); err != nil {
		return moduleCache{}, fmt.Errorf("%w: %v", ErrModules, err)
	}
	os.RemoveAll(mc.Dir) // a half-built cache from a killed run
	if err := os.Rename(stage, mc.Dir); err != nil {
		return moduleCache{}, fmt.Errorf("%w: %v", ErrModules, err)
	}
	// Caches for other kernels are dead weight now.
	if old, _ := filepath.Glob(filepath.Join(root, "modules-*")); len(old) > 0 {
		for _, o := range old {
			if o != mc.Dir {
				os.RemoveAll(o)
			}
		}
	}
	return mc, nil
}

// copyFile copies src to a new file dst (fs.ErrExist if it exists).
func copyFile(dst, src string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// addTo puts kvm_amd and the named optional modules, with their load
// lists, into the archive under dir.
func (mc moduleCache) addTo(c *cpioWriter, dir string, optional []string) error {
	added := map[string]bool{}
	for _, m := range append([]string{kvmModule}, optional...) {
		list, err := os.ReadFile(filepath.Join(mc.Dir, m+".load"))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && m != kvmModule {
				continue // built into this kernel: nothing to load
			}
			return fmt.Errorf("%w: %v", ErrModules, err)
		}
		c.Bytes(filepath.Join(dir, m+".load"), 0o644, list)
		for _, f := range strings.Fields(string(list)) {
			if !added[f] {
				added[f] = true
				c.File(filepath.Join(dir, f), filepath.Join(mc.Dir, f), 0o644)
			}
		}
	}
	return nil
}
