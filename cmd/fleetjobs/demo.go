package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/dispatch/sim"
	"github.com/fleetjobs/fleetjobs/domain/device"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// The demo fleet (serve --demo): a refrigerated vending machine template,
// a few hundred machines across cities, a handful of them failing or offline
// in the simulated fleet, and device sets to run jobs on. It is recorded
// through the command path like any operator's commands, so its history is
// in the log and the read models show it.
const (
	demoTemplateID = "vending-fridge"
	demoActor      = "demo"
	// demoPerCity is how many machines each city has.
	demoPerCity = 50
)

// demoCities are the cities of the demo machines, in ID order.
func demoCities() []string {
	return []string{"Seattle", "Portland", "Denver", "Austin", "Chicago", "Boston"}
}

// demoFaults makes a handful of machines fail or stay offline in the
// simulated fleet: the device's index in its city -> its extra properties.
// Seattle has both kinds, so the README's fan-speed job shows them.
func demoFaults(city string, i int) map[string]any {
	switch {
	case i == 7 || (i == 23 && city != "Austin"):
		return map[string]any{sim.FailProperty: "compressor fault"}
	case i == 31 && (city == "Seattle" || city == "Denver"):
		return map[string]any{sim.OfflineProperty: true}
	}
	return nil
}

// demoDevices are the demo machines' registrations.
func demoDevices() []device.Register {
	firmware := []string{"2.4.1", "2.5.0", "3.0.2"}
	models := []string{"FrostVend 300", "FrostVend 500"}
	var out []device.Register
	for _, city := range demoCities() {
		slug := strings.ToLower(city)
		for i := range demoPerCity {
			props := map[string]any{"city": city, "model": models[i%len(models)], "firmware": firmware[i%len(firmware)]}
			for k, v := range demoFaults(city, i) {
				props[k] = v
			}
			out = append(out, device.Register{
				DeviceID:   fmt.Sprintf("fridge-%s-%03d", slug, i+1),
				Name:       fmt.Sprintf("Fridge %s %03d", city, i+1),
				TemplateID: demoTemplateID,
				Properties: props,
			})
		}
	}
	return out
}

// demoSets are the demo's device sets: one per city and one of every
// machine.
func demoSets() []device.DefineSet {
	out := []device.DefineSet{{SetID: "all-fridges", Name: "All refrigerated vending machines", TemplateID: demoTemplateID}}
	for _, city := range demoCities() {
		out = append(out, device.DefineSet{
			SetID: strings.ToLower(city) + "-fridges", Name: city + " fridges", TemplateID: demoTemplateID,
			Conditions: []device.Condition{{Property: "city", Op: device.OpEq, Value: city}},
		})
	}
	return out
}

// demoCurl is the example the demo prints: the fan-speed job of the README.
func demoCurl(apiURL string) string {
	return `curl -X PUT ` + apiURL + `/jobs/fan-1200 -H 'Content-Type: application/json' -d '{"name":"Fan speed 1200","deviceSetId":"seattle-fridges","jobType":"setting","operations":[{"name":"fanSpeed","value":1200}],"timeoutSeconds":5}'`
}

// seedDemo records the demo fleet unless the log has its template. Every
// command has a fixed command ID, so a seed interrupted half-way and run
// again (by hand, say) records each thing once.
func seedDemo(ctx context.Context, h *commands.Handler, logger *zap.Logger) (seeded bool, err error) {
	t, err := h.Template(ctx, demoTemplateID)
	if err != nil {
		return false, fmt.Errorf("demo: look up template %s: %w", demoTemplateID, err)
	}
	if t.Published {
		logger.Info("demo fleet already recorded: nothing seeded", zap.String("template", demoTemplateID))
		return false, nil
	}
	meta := func(what string) commands.Meta {
		return commands.Meta{CommandID: "demo-seed-" + what, CorrelationID: "demo-seed", Actor: demoActor}
	}
	caps := func(schema device.Schema, names ...string) []device.Capability {
		out := make([]device.Capability, len(names))
		for i, n := range names {
			out[i] = device.Capability{Name: n, Schema: schema}
		}
		return out
	}
	_, err = h.PublishTemplate(ctx, meta("template"), device.PublishTemplate{
		TemplateID: demoTemplateID, Name: "Refrigerated vending machine",
		Settings: caps(device.SchemaNumber, "fanSpeed", "targetTemperature"),
		// simFail and simOffline are what the simulated fleet reads: they
		// are declared so demo devices may carry them.
		Properties: append(caps(device.SchemaString, "city", "model", "firmware", sim.FailProperty), caps(device.SchemaBoolean, sim.OfflineProperty)...),
		Commands:   caps(device.SchemaObject, "reboot"),
	})
	if err != nil {
		return false, fmt.Errorf("demo: publish template %s: %w", demoTemplateID, err)
	}
	devices := demoDevices()
	if _, err := h.ImportDevices(ctx, meta("devices"), devices); err != nil {
		return false, fmt.Errorf("demo: register %d devices: %w", len(devices), err)
	}
	sets := demoSets()
	for _, s := range sets {
		if _, err := h.DefineDeviceSet(ctx, meta("set-"+s.SetID), s); err != nil {
			return false, fmt.Errorf("demo: define device set %s: %w", s.SetID, err)
		}
	}
	logger.Info("demo fleet recorded", zap.String("template", demoTemplateID),
		zap.Int("devices", len(devices)), zap.Int("device_sets", len(sets)))
	return true, nil
}

// printDemo tells a person at the terminal where the API is and how to run
// a job on the demo fleet. It goes to w as plain text, not as a log line,
// so that the curl can be copied as it is.
func printDemo(w io.Writer, baseURL string, sim bool) {
	if w == nil {
		return
	}
	api := baseURL + fjhttp.APIBase
	fmt.Fprintf(w, "\nfleetjobs demo: the API is at %s (try %s/device-sets and %s/jobs)\n", api, api, api)
	fmt.Fprintf(w, "The web page is at %s/ (open it in a browser)\n", baseURL)
	if !sim {
		fmt.Fprintf(w, "FLEETJOBS_DEVICES is not sim: the demo fridges are not simulated, so jobs on them stay pending (none) or time out (mqtt: no fridge is connected). Run with FLEETJOBS_DEVICES=sim to see them run.\n")
	}
	fmt.Fprintf(w, "Set the fan speed of the Seattle fridges:\n\n  %s\n\nthen watch it:\n\n  curl %s/jobs/fan-1200\n  curl '%s/jobs/fan-1200/devices?status=failed'\n\n", demoCurl(api), api, api)
}
