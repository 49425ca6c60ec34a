package mountspec

import (
	"encoding/csv"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/berthd/berth/core/oci"
	"github.com/berthd/berth/core/volumes"
)

func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}

// ParseVolume parses a docker -v value:
//
//	/ctr                        anonymous volume at /ctr
//	name:/ctr[:opts]            named volume (created on first use)
//	/host:/ctr[:opts]           bind of an existing host path
//
// opts is a comma-separated list of ro or rw, z or Z, a propagation
// (rprivate, private, rshared, shared, rslave, slave; binds only), nocopy
// (volumes only), and docker's ignored consistency words (consistent,
// cached, delegated).
func ParseVolume(spec string) (Mount, error) {
	parts := strings.Split(spec, ":")
	var m Mount
	switch len(parts) {
	case 1:
		m = Mount{Type: TypeVolume, Anonymous: true}
	case 2, 3:
		src := parts[0]
		if src == "" {
			return Mount{}, invalid("volume %q: the source before ':' is empty", spec)
		}
		if strings.HasPrefix(src, "/") {
			m = Mount{Type: TypeBind, Source: path.Clean(src)}
		} else {
			if err := volumes.ValidateName(src); err != nil {
				return Mount{}, fmt.Errorf("volume %q: %w", spec, err)
			}
			m = Mount{Type: TypeVolume, Source: src}
		}
	default:
		return Mount{}, invalid("volume %q: too many ':' (want [SOURCE:]DESTINATION[:OPTIONS])", spec)
	}
	dst, err := cleanDestination(parts[min(len(parts)-1, 1)])
	if err != nil {
		return Mount{}, fmt.Errorf("volume %q: %w", spec, err)
	}
	m.Destination = dst
	if len(parts) == 3 {
		if err := m.applyModes(parts[2]); err != nil {
			return Mount{}, fmt.Errorf("volume %q: %w", spec, err)
		}
	}
	return m, nil
}

// applyModes sets what a -v options list says.
func (m *Mount) applyModes(list string) error {
	seen := map[string]string{} // kind -> word
	for _, w := range strings.Split(list, ",") {
		kind := ""
		switch w {
		case "ro", "rw":
			kind, m.ReadOnly = "access mode", w == "ro"
		case "z", "Z":
			kind, m.Relabel = "relabel", w
		case "rprivate", "private", "rshared", "shared", "rslave", "slave":
			if m.Type != TypeBind {
				return invalid("option %q: propagation applies to bind mounts only", w)
			}
			kind, m.Propagation = "propagation", w
		case "nocopy":
			if m.Type != TypeVolume {
				return invalid("option %q applies to volumes only", w)
			}
			kind, m.NoCopy = "nocopy", true
		case "consistent", "cached", "delegated":
			kind = "consistency"
		case "":
			return invalid("empty option in %q", list)
		default:
			return invalid("unknown option %q (ro, rw, z, Z, nocopy, or a propagation such as rslave)", w)
		}
		if prev, ok := seen[kind]; ok {
			return invalid("options %q and %q both set the %s", prev, w, kind)
		}
		seen[kind] = w
	}
	return nil
}

// cleanDestination checks a path inside the container: absolute, no NUL,
// not the root itself. It returns it cleaned.
func cleanDestination(dst string) (string, error) {
	switch {
	case dst == "":
		return "", invalid("destination is empty")
	case strings.IndexByte(dst, 0) >= 0:
		return "", invalid("destination %q contains a NUL byte", dst)
	case !path.IsAbs(dst):
		return "", invalid("destination %q is not an absolute path", dst)
	}
	dst = path.Clean(dst)
	if dst == "/" {
		return "", invalid("destination must not be '/'")
	}
	return dst, nil
}

// ParseMount parses a docker --mount value: comma-separated key=value
// fields (CSV, so values may be quoted):
//
//	type=volume|bind|tmpfs (default volume)
//	source|src=NAME or /host/path
//	destination|dst|target=/ctr (required)
//	readonly|ro[=true|false]
//	bind-propagation=rprivate|private|rshared|shared|rslave|slave
//	volume-nocopy[=true|false], volume-driver=D, volume-label=K=V, volume-opt=K=V
//	tmpfs-size=SIZE, tmpfs-mode=OCTAL
//	consistency=... (ignored, as docker does on Linux)
func ParseMount(spec string) (Mount, error) {
	fields, err := csv.NewReader(strings.NewReader(spec)).Read()
	if err == io.EOF {
		fields, err = nil, nil
	}
	if err != nil {
		return Mount{}, invalid("mount %q: %v", spec, err)
	}
	m := Mount{Type: TypeVolume}
	var typeSeen []string // keys that only fit one type
	for _, f := range fields {
		key, value, hasValue := strings.Cut(f, "=")
		if need, ok := typedKeys[key]; ok {
			typeSeen = append(typeSeen, key+"="+string(need))
		}
		if err := m.setField(key, value, hasValue); err != nil {
			return Mount{}, fmt.Errorf("mount %q: %w", spec, err)
		}
	}
	if err := m.checkParsed(typeSeen); err != nil {
		return Mount{}, fmt.Errorf("mount %q: %w", spec, err)
	}
	return m, nil
}

// typedKeys are the --mount keys that belong to one type.
var typedKeys = map[string]Type{
	"bind-propagation": TypeBind,
	"volume-nocopy":    TypeVolume, "volume-driver": TypeVolume, "volume-label": TypeVolume, "volume-opt": TypeVolume,
	"tmpfs-size": TypeTmpfs, "tmpfs-mode": TypeTmpfs,
}

func (m *Mount) setField(key, value string, hasValue bool) error {
	needValue := func() error {
		if !hasValue || value == "" {
			return invalid("%s needs a value", key)
		}
		return nil
	}
	switch key {
	case "readonly", "ro", "volume-nocopy":
		b := true
		if hasValue {
			var err error
			if b, err = strconv.ParseBool(value); err != nil {
				return invalid("%s=%q is not true or false", key, value)
			}
		}
		if key == "volume-nocopy" {
			m.NoCopy = b
		} else {
			m.ReadOnly = b
		}
		return nil
	case "consistency":
		return nil
	}
	if err := needValue(); err != nil {
		return err
	}
	switch key {
	case "type":
		switch t := Type(value); t {
		case TypeVolume, TypeBind, TypeTmpfs:
			m.Type = t
		default:
			return invalid("type %q is not supported (volume, bind or tmpfs)", value)
		}
	case "source", "src":
		m.Source = value
	case "destination", "dst", "target":
		m.Destination = value
	case "bind-propagation":
		switch value {
		case "rprivate", "private", "rshared", "shared", "rslave", "slave":
			m.Propagation = value
		default:
			return invalid("bind-propagation %q is not one of rprivate, private, rshared, shared, rslave, slave", value)
		}
	case "volume-driver":
		m.Driver = value
	case "volume-label", "volume-opt":
		k, v, ok := strings.Cut(value, "=")
		if !ok || k == "" {
			return invalid("%s=%q is not KEY=VALUE", key, value)
		}
		target := &m.Labels
		if key == "volume-opt" {
			target = &m.DriverOptions
		}
		if *target == nil {
			*target = map[string]string{}
		}
		(*target)[k] = v
	case "tmpfs-size":
		n, err := oci.ParseSize(value)
		if err != nil || n <= 0 {
			return invalid("tmpfs-size %q is not a positive size such as 64m", value)
		}
		m.TmpfsOptions = append(m.TmpfsOptions, "size="+strconv.FormatInt(n, 10))
	case "tmpfs-mode":
		mode, err := parseMode(value)
		if err != nil {
			return invalid("tmpfs-mode %q: %v", value, err)
		}
		m.TmpfsOptions = append(m.TmpfsOptions, "mode="+mode)
	default:
		return invalid("unknown key %q", key)
	}
	return nil
}

// checkParsed validates a whole --mount once every field is read.
func (m *Mount) checkParsed(typedSeen []string) error {
	for _, kt := range typedSeen {
		key, t, _ := strings.Cut(kt, "=")
		if Type(t) != m.Type {
			return invalid("%s applies to type=%s only, not type=%s", key, t, m.Type)
		}
	}
	if m.Destination == "" {
		return invalid("destination (dst, target) is required")
	}
	dst, err := cleanDestination(m.Destination)
	if err != nil {
		return err
	}
	m.Destination = dst
	switch m.Type {
	case TypeBind:
		if m.Source == "" {
			return invalid("type=bind needs a source (src)")
		}
		if !path.IsAbs(m.Source) || strings.IndexByte(m.Source, 0) >= 0 {
			return invalid("bind source %q is not an absolute path", m.Source)
		}
		m.Source = path.Clean(m.Source)
	case TypeVolume:
		if m.Source == "" {
			m.Anonymous = true
		} else if err := volumes.ValidateName(m.Source); err != nil {
			return err
		}
	case TypeTmpfs:
		if m.Source != "" {
			return invalid("type=tmpfs takes no source")
		}
	}
	return nil
}

// ParseTmpfs parses a docker --tmpfs value: /ctr[:OPTIONS], OPTIONS being
// tmpfs mount options (size=64m, mode=1777, uid=, gid=, nr_inodes=,
// and flags such as ro, noexec, nosuid, nodev).
func ParseTmpfs(spec string) (Mount, error) {
	dst, list, hasOpts := strings.Cut(spec, ":")
	d, err := cleanDestination(dst)
	if err != nil {
		return Mount{}, fmt.Errorf("tmpfs %q: %w", spec, err)
	}
	m := Mount{Type: TypeTmpfs, Destination: d}
	if hasOpts {
		opts, ro, err := ParseTmpfsOptions(strings.Split(list, ","))
		if err != nil {
			return Mount{}, fmt.Errorf("tmpfs %q: %w", spec, err)
		}
		m.TmpfsOptions, m.ReadOnly = opts, ro
	}
	return m, nil
}

// tmpfsFlags are the mount flags a tmpfs accepts.
var tmpfsFlags = map[string]bool{
	"exec": true, "noexec": true, "suid": true, "nosuid": true, "dev": true, "nodev": true,
	"atime": true, "noatime": true, "diratime": true, "nodiratime": true, "relatime": true,
	"norelatime": true, "strictatime": true, "nostrictatime": true, "sync": true, "async": true,
	"dirsync": true,
}

// ParseTmpfsOptions validates tmpfs mount options and returns them
// normalised (size in bytes, mode in octal) without ro and rw, which it
// reports as readonly. It serves --tmpfs and the local volume driver's o=
// option for type=tmpfs.
func ParseTmpfsOptions(opts []string) (out []string, readonly bool, err error) {
	for _, o := range opts {
		key, value, hasValue := strings.Cut(o, "=")
		switch {
		case o == "ro" || o == "rw":
			readonly = o == "ro"
			continue
		case o == "":
			return nil, false, invalid("empty tmpfs option")
		case !hasValue:
			if !tmpfsFlags[o] {
				return nil, false, invalid("unknown tmpfs option %q", o)
			}
		case key == "size":
			if strings.HasSuffix(value, "%") {
				if n, err := strconv.Atoi(strings.TrimSuffix(value, "%")); err != nil || n <= 0 {
					return nil, false, invalid("tmpfs option %q: a percentage must be a positive integer", o)
				}
				break
			}
			n, err := oci.ParseSize(value)
			if err != nil || n <= 0 {
				return nil, false, invalid("tmpfs option %q: size must be positive, such as 64m", o)
			}
			o = "size=" + strconv.FormatInt(n, 10)
		case key == "mode":
			mode, err := parseMode(value)
			if err != nil {
				return nil, false, invalid("tmpfs option %q: %v", o, err)
			}
			o = "mode=" + mode
		case key == "uid" || key == "gid":
			if _, err := strconv.ParseUint(value, 10, 32); err != nil {
				return nil, false, invalid("tmpfs option %q: %s must be a number", o, key)
			}
		case key == "nr_inodes" || key == "nr_blocks":
			n, err := oci.ParseSize(value)
			if err != nil {
				return nil, false, invalid("tmpfs option %q: %s must be a number with an optional k, m or g", o, key)
			}
			o = key + "=" + strconv.FormatInt(n, 10)
		case key == "huge":
			switch value {
			case "never", "always", "within_size", "advise", "deny", "force":
			default:
				return nil, false, invalid("tmpfs option %q: huge is never, always, within_size or advise", o)
			}
		case key == "mpol" && value != "":
		default:
			return nil, false, invalid("unknown tmpfs option %q", o)
		}
		out = append(out, o)
	}
	return out, readonly, nil
}

// parseMode checks an octal permission mode and returns it with a leading 0.
func parseMode(s string) (string, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return "", fmt.Errorf("not an octal mode up to 7777")
	}
	return fmt.Sprintf("%04o", n), nil
}
