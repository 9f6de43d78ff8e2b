package lifecycle

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// WriteAddrFile writes the addresses a service actually bound (name to
// host:port) as a JSON object to path, so that whoever started it with
// port 0 (tests, the standalone launcher) learns the ports. The file
// appears whole: it is written beside path and renamed into place.
func WriteAddrFile(path string, addrs map[string]string) error {
	data, err := json.Marshal(addrs)
	if err != nil {
		return fmt.Errorf("address file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".addrs-*")
	if err != nil {
		return fmt.Errorf("address file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("address file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("address file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("address file: %w", err)
	}
	return nil
}

// ReadAddrFile reads a file written by WriteAddrFile.
func ReadAddrFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var addrs map[string]string
	if err := json.Unmarshal(data, &addrs); err != nil {
		return nil, fmt.Errorf("address file %s: %w", path, err)
	}
	return addrs, nil
}
