// Package device holds the Device, DeviceTemplate and DeviceSet aggregates:
// templates with their schemas, devices and their property values, device
// sets with their conditions and the "broken set" rule.
//
// It imports nothing of the project. The rules arrive with the devices issue.
package device
