package volumes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"

	"github.com/berthd/berth/core/identifiers"
	"github.com/berthd/berth/core/labels"
	"github.com/berthd/berth/core/metadata"
	"github.com/berthd/berth/core/namespaces"
)

// Store keeps volume records in the metadata database and their data in
// drivers. Calls on one volume are serialised, so a driver never sees two
// operations on the same volume at once; calls on different volumes run in
// parallel.
//
// Crash safety: Create runs the driver first and commits the record after,
// so a crash leaves at most an empty directory that a later Create of the
// name adopts. Remove runs the driver (which moves the data aside before
// deleting it) and then deletes the record, so a crash leaves either a
// record whose data Mount recreates empty or nothing at all.
type Store struct {
	db      *metadata.DB
	drivers map[string]Driver
	locks   keyLocks
	running atomic.Pointer[RunningFunc]
}

// NewStore returns a store over db with the given drivers by name.
func NewStore(db *metadata.DB, drivers map[string]Driver) *Store {
	return &Store{db: db, drivers: maps.Clone(drivers), locks: keyLocks{m: map[string]*keyLock{}}}
}

// SetRunningFunc tells the store how to learn whether a container runs.
// Until it is called, a container counts as running while it has the
// volume mounted (between Mount and Unmount).
func (s *Store) SetRunningFunc(f RunningFunc) { s.running.Store(&f) }

// Drivers lists the names of the available drivers, sorted.
func (s *Store) Drivers() []string { return slices.Sorted(maps.Keys(s.drivers)) }

func (s *Store) driver(name string) (Driver, error) {
	d, ok := s.drivers[name]
	if !ok {
		return nil, fmt.Errorf("volume driver %q is not available (available: %s): %w", name, strings.Join(s.Drivers(), ", "), errdefs.ErrNotFound)
	}
	return d, nil
}

// lock serialises the calls on volume ns/name.
func (s *Store) lock(ns, name string) func() { return s.locks.lock(ns + "/" + name) }

// Create makes a volume as spec says. An empty name gets a random one.
func (s *Store) Create(ctx context.Context, spec Spec) (Volume, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return Volume{}, err
	}
	if spec.Name == "" {
		spec.Name = NewName()
	}
	if err := ValidateName(spec.Name); err != nil {
		return Volume{}, err
	}
	defer s.lock(ns, spec.Name)()
	if _, err := s.get(ns, spec.Name); err == nil {
		return Volume{}, fmt.Errorf("volume %q: %w", spec.Name, errdefs.ErrAlreadyExists)
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return Volume{}, err
	}
	return s.create(ctx, ns, spec)
}

// create makes the volume; the caller holds its lock and checked that it
// does not exist.
func (s *Store) create(ctx context.Context, ns string, spec Spec) (Volume, error) {
	if spec.Driver == "" {
		spec.Driver = DefaultDriver
	}
	d, err := s.driver(spec.Driver)
	if err != nil {
		return Volume{}, err
	}
	if err := labels.ValidateAll(spec.Labels); err != nil {
		return Volume{}, fmt.Errorf("volume %q: %w", spec.Name, err)
	}
	v := Volume{
		Namespace: ns, Name: spec.Name, Driver: spec.Driver,
		Labels: spec.Labels, Options: spec.Options, CreatedAt: time.Now().UTC(), Anonymous: spec.Anonymous,
	}
	if v.Mountpoint, err = d.Create(ctx, v); err != nil {
		return Volume{}, fmt.Errorf("create volume %q: %w", v.Name, err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return putVolume(tx, v) }); err != nil {
		if rerr := d.Remove(ctx, v); rerr != nil {
			slog.Warn("remove the data of a volume whose record failed", "volume", v.Name, "error", rerr)
		}
		return Volume{}, fmt.Errorf("record volume %q: %w", v.Name, err)
	}
	return v, nil
}

// Get returns volume name.
func (s *Store) Get(ctx context.Context, name string) (Volume, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return Volume{}, err
	}
	if err := ValidateName(name); err != nil {
		return Volume{}, err
	}
	return s.get(ns, name)
}

func (s *Store) get(ns, name string) (Volume, error) {
	var v Volume
	err := s.db.View(func(tx *bolt.Tx) error {
		var ok bool
		var err error
		v, ok, err = getVolume(tx, ns, name)
		if err == nil && !ok {
			err = fmt.Errorf("volume %q: %w", name, errdefs.ErrNotFound)
		}
		return err
	})
	return v, err
}

// List returns the volumes of the context's namespace that f matches,
// sorted by name.
func (s *Store) List(ctx context.Context, f Filter) ([]Volume, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	vols, err := s.list(ns)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(vols, func(v Volume) bool { return !f.Match(v) }), nil
}

func (s *Store) list(ns string) ([]Volume, error) {
	var vols []Volume
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		vols, err = listVolumes(tx, ns)
		return err
	})
	return vols, err
}

// update changes the record of ns/name with fn in one transaction.
func (s *Store) update(ns, name string, fn func(*Volume)) (Volume, error) {
	var v Volume
	err := s.db.Update(func(tx *bolt.Tx) error {
		var ok bool
		var err error
		if v, ok, err = getVolume(tx, ns, name); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("volume %q: %w", name, errdefs.ErrNotFound)
		}
		fn(&v)
		return putVolume(tx, v)
	})
	return v, err
}

// Remove deletes volume name and its data. A volume with users is refused
// with FailedPrecondition naming them, unless force is set; even then a
// volume whose user is running is refused.
func (s *Store) Remove(ctx context.Context, name string, force bool) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	if err := ValidateName(name); err != nil {
		return err
	}
	defer s.lock(ns, name)()
	v, err := s.get(ns, name)
	if err != nil {
		return err
	}
	if err := s.checkRemovable(ctx, v, force); err != nil {
		return err
	}
	return s.remove(ctx, v)
}

func (s *Store) checkRemovable(ctx context.Context, v Volume, force bool) error {
	if len(v.Users) == 0 {
		return nil
	}
	if !force {
		return fmt.Errorf("volume %q is in use by container(s) %s: %w", v.Name, strings.Join(v.Users, ", "), errdefs.ErrFailedPrecondition)
	}
	running, err := s.runningUsers(ctx, v)
	if err != nil {
		return fmt.Errorf("volume %q: cannot tell whether its users run: %w", v.Name, err)
	}
	if len(running) > 0 {
		return fmt.Errorf("volume %q is in use by running container(s) %s; stop them first: %w", v.Name, strings.Join(running, ", "), errdefs.ErrFailedPrecondition)
	}
	return nil
}

// runningUsers asks the runtime which users of v run. Without a
// RunningFunc the users that have v mounted count as running.
func (s *Store) runningUsers(ctx context.Context, v Volume) ([]string, error) {
	f := s.running.Load()
	if f == nil {
		return v.Mounted, nil
	}
	var running []string
	for _, id := range v.Users {
		ok, err := (*f)(ctx, id)
		if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return nil, fmt.Errorf("container %s: %w", id, err)
		}
		if ok {
			running = append(running, id)
		}
	}
	return running, nil
}

// remove deletes v's data and then its record; the caller holds its lock.
func (s *Store) remove(ctx context.Context, v Volume) error {
	d, err := s.driver(v.Driver)
	if err != nil {
		return fmt.Errorf("remove volume %q: %w", v.Name, err)
	}
	if err := d.Remove(ctx, v); err != nil {
		return fmt.Errorf("remove volume %q: %w", v.Name, err)
	}
	return s.db.Update(func(tx *bolt.Tx) error { return deleteVolume(tx, v.Namespace, v.Name) })
}

// Prune removes the unused volumes f matches: the anonymous ones, or all of
// them with all. It returns the names removed and the bytes they held.
func (s *Store) Prune(ctx context.Context, all bool, f Filter) ([]string, int64, error) {
	vols, err := s.List(ctx, f)
	if err != nil {
		return nil, 0, err
	}
	var removed []string
	var reclaimed int64
	var errs []error
	for _, v := range vols {
		if len(v.Users) > 0 || (!all && !v.Anonymous) {
			continue
		}
		size, err := s.pruneOne(ctx, v)
		switch {
		case err == nil:
			removed = append(removed, v.Name)
			reclaimed += max(size, 0)
		case errors.Is(err, errdefs.ErrNotFound), errors.Is(err, errdefs.ErrFailedPrecondition):
			// Removed or taken into use meanwhile.
		default:
			errs = append(errs, err)
		}
	}
	return removed, reclaimed, errors.Join(errs...)
}

// pruneOne removes v if it is still unused and returns its size.
func (s *Store) pruneOne(ctx context.Context, v Volume) (int64, error) {
	defer s.lock(v.Namespace, v.Name)()
	v, err := s.get(v.Namespace, v.Name)
	if err != nil {
		return 0, err
	}
	if err := s.checkRemovable(ctx, v, false); err != nil {
		return 0, err
	}
	size := s.size(ctx, v)
	return size, s.remove(ctx, v)
}

func (s *Store) size(ctx context.Context, v Volume) int64 {
	d, err := s.driver(v.Driver)
	if err != nil {
		return -1
	}
	n, err := d.Size(ctx, v)
	if err != nil {
		slog.Debug("volume size", "volume", v.Name, "error", err)
		return -1
	}
	return n
}

// Acquire records that container containerID uses the volume spec names,
// creating it first when it does not exist (named volumes are created on
// first use; an empty name makes a new anonymous volume). An existing
// volume of another driver than spec.Driver is refused.
func (s *Store) Acquire(ctx context.Context, containerID string, spec Spec) (Volume, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return Volume{}, err
	}
	if err := identifiers.Validate(containerID); err != nil {
		return Volume{}, fmt.Errorf("container id: %w", err)
	}
	if spec.Name == "" {
		spec.Name, spec.Anonymous = NewName(), true
	}
	if err := ValidateName(spec.Name); err != nil {
		return Volume{}, err
	}
	defer s.lock(ns, spec.Name)()
	v, err := s.get(ns, spec.Name)
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		if _, err := s.create(ctx, ns, spec); err != nil {
			return Volume{}, err
		}
	case err != nil:
		return Volume{}, err
	case spec.Driver != "" && spec.Driver != v.Driver:
		return Volume{}, fmt.Errorf("volume %q exists with driver %q, not %q: %w", v.Name, v.Driver, spec.Driver, errdefs.ErrFailedPrecondition)
	}
	return s.update(ns, spec.Name, func(v *Volume) { v.Users = addID(v.Users, containerID) })
}

// Mount makes volume name available for container containerID, which is
// about to start, and returns the host path to bind into it. The container
// becomes a user if it was not.
func (s *Store) Mount(ctx context.Context, name, containerID string) (string, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return "", err
	}
	if err := identifiers.Validate(containerID); err != nil {
		return "", fmt.Errorf("container id: %w", err)
	}
	defer s.lock(ns, name)()
	v, err := s.get(ns, name)
	if err != nil {
		return "", err
	}
	d, err := s.driver(v.Driver)
	if err != nil {
		return "", err
	}
	path, err := d.Mount(ctx, v)
	if err != nil {
		return "", fmt.Errorf("mount volume %q: %w", name, err)
	}
	_, err = s.update(ns, name, func(v *Volume) {
		v.Users = addID(v.Users, containerID)
		v.Mounted = addID(v.Mounted, containerID)
	})
	return path, err
}

// Unmount says container containerID stopped using the data of volume
// name; the driver unmounts it once no container has it mounted. A volume
// that no longer exists is not an error.
func (s *Store) Unmount(ctx context.Context, name, containerID string) error {
	return s.onExisting(ctx, name, func(v Volume) error { return s.unmount(ctx, v, containerID) })
}

// onExisting runs fn on volume name under the volume's lock; a volume that
// does not exist (removed by force meanwhile) is not an error.
func (s *Store) onExisting(ctx context.Context, name string, fn func(Volume) error) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	defer s.lock(ns, name)()
	v, err := s.get(ns, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return fn(v)
}

// unmount drops containerID from v's mounted users, unmounting the data
// when it was the last; the caller holds v's lock.
func (s *Store) unmount(ctx context.Context, v Volume, containerID string) error {
	if !slices.Contains(v.Mounted, containerID) {
		return nil
	}
	if len(v.Mounted) == 1 {
		d, err := s.driver(v.Driver)
		if err != nil {
			return err
		}
		if err := d.Unmount(ctx, v); err != nil {
			return fmt.Errorf("unmount volume %q: %w", v.Name, err)
		}
	}
	_, err := s.update(v.Namespace, v.Name, func(v *Volume) { v.Mounted = removeID(v.Mounted, containerID) })
	return err
}

// Release says container containerID no longer uses volume name (it is
// being removed). With removeAnonymous an anonymous volume left without
// users is removed too. A volume that no longer exists is not an error.
func (s *Store) Release(ctx context.Context, name, containerID string, removeAnonymous bool) error {
	return s.onExisting(ctx, name, func(v Volume) error {
		if err := s.unmount(ctx, v, containerID); err != nil {
			return err
		}
		v, err := s.update(v.Namespace, v.Name, func(v *Volume) { v.Users = removeID(v.Users, containerID) })
		if err != nil {
			return err
		}
		if removeAnonymous && v.Anonymous && len(v.Users) == 0 {
			return s.remove(ctx, v)
		}
		return nil
	})
}

// ReleaseAll releases every volume container containerID uses, as Release
// does; the runtime calls it when it removes the container.
func (s *Store) ReleaseAll(ctx context.Context, containerID string, removeAnonymous bool) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	vols, err := s.list(ns)
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range vols {
		if slices.Contains(v.Users, containerID) || slices.Contains(v.Mounted, containerID) {
			errs = append(errs, s.Release(ctx, v.Name, containerID, removeAnonymous))
		}
	}
	return errors.Join(errs...)
}

// keyLocks is a set of mutexes by key, each existing while it is used.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

// lock takes the mutex of key and returns its unlock function.
func (k *keyLocks) lock(key string) func() {
	k.mu.Lock()
	l := k.m[key]
	if l == nil {
		l = &keyLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
