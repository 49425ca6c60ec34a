package cni

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/berthd/berth/core/network"
)

// upgradeLists brings the lists berth wrote before it masqueraded its
// bridge networks itself up to date: their bridge plugin's ipMasq made a
// NAT chain per container. The file is rewritten with ipMasq off and the
// "berth" object's masquerade flag on, everything else kept. Containers
// attached under the old list keep its plugin chains until they detach:
// teardown runs with the list each attachment recorded.
func (m *Manager) upgradeLists() error {
	nets, err := m.conf.networks()
	if err != nil {
		return err
	}
	for _, n := range nets {
		if !wantsBerthMasquerade(n) || masquerades(n) {
			continue
		}
		data, changed, err := withBerthMasquerade(n.Config)
		if err != nil {
			slog.Warn("upgrade network list", "network", n.Name, "file", n.File, "error", err)
			continue
		}
		if !changed {
			continue
		}
		if err := replaceFile(n.File, data); err != nil {
			return fmt.Errorf("upgrade network %s: %w", n.Name, err)
		}
		slog.Info("network list upgraded: berth masquerades it instead of the bridge plugin", "network", n.Name, "file", n.File)
	}
	return nil
}

// wantsBerthMasquerade reports whether berth masquerades a network like
// n when it writes its list (see managedList).
func wantsBerthMasquerade(n *network.Network) bool {
	return n.Managed() && n.Driver == network.DriverBridge && !n.Internal &&
		len(n.Subnets) == 1 && n.Subnets[0].Subnet.Addr().Is4()
}

// withBerthMasquerade turns the bridge plugin's ipMasq off in the list
// data and sets the "berth" object's masquerade flag; changed is false
// when no bridge plugin masqueraded.
func withBerthMasquerade(data []byte) (_ []byte, changed bool, err error) {
	var list map[string]json.RawMessage
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, false, err
	}
	var plugins []map[string]json.RawMessage
	if err := json.Unmarshal(list["plugins"], &plugins); err != nil {
		return nil, false, fmt.Errorf("plugins: %w", err)
	}
	for _, p := range plugins {
		if bytes.Equal(p["type"], []byte(`"bridge"`)) && bytes.Equal(p["ipMasq"], []byte("true")) {
			p["ipMasq"] = json.RawMessage("false")
			changed = true
		}
	}
	if !changed {
		return data, false, nil
	}
	var meta map[string]json.RawMessage
	if err := json.Unmarshal(list["berth"], &meta); err != nil {
		return nil, false, fmt.Errorf("berth object: %w", err)
	}
	meta["masquerade"] = json.RawMessage("true")
	if list["berth"], err = json.Marshal(meta); err != nil {
		return nil, false, err
	}
	if list["plugins"], err = json.Marshal(plugins); err != nil {
		return nil, false, err
	}
	out, err := json.MarshalIndent(list, "", "  ")
	return out, true, err
}

// replaceFile replaces path's content atomically, keeping its mode.
func replaceFile(path string, data []byte) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".berth-upgrade-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(info.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
