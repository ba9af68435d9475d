package commands_test

import (
	"crypto/rand"
	"testing"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/dispatch/mqtt"
)

// BenchmarkImportDeviceKeys is what device keys cost an import of new
// devices: keys=off is the baseline (DeviceRegistered only), keys=on draws
// a key per device as serve does and appends DeviceKeyIssued with it.
func BenchmarkImportDeviceKeys(b *testing.B) {
	draw := func() (string, string, error) {
		k, err := mqtt.NewKey(rand.Reader)
		return k, mqtt.HashKey(k), err
	}
	b.Run("keys=off", func(b *testing.B) { benchmarkImport(b) })
	b.Run("keys=on", func(b *testing.B) { benchmarkImport(b, commands.WithDeviceKeys(draw)) })
}
