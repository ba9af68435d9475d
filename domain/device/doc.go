// Package device holds three aggregates, each a Decider with its own stream:
//
//   - Template (stream template-{id}): a device template publishes the
//     settings, properties and commands its devices have, each with a
//     Schema (number, string, boolean, object).
//   - Device (stream device-{id}): a device has a name, a template and
//     property values checked against the template's property schemas.
//   - Set (stream deviceset-{id}): a device set is a template plus
//     conditions {property, op, value}; its members are the template's
//     live devices that meet every condition (Matches). A set is broken
//     (BrokenReason) when its template is missing or deleted, or a condition
//     no longer fits the template; a broken set lists no devices.
//
// Each aggregate has Decide (state, command) -> events | *domain.Error,
// Evolve (state, event) -> state, which never fails, and Fold. A repeated
// command decides zero events, never an error, so retries are safe.
//
// Decisions taken here, which the HTTP API documents:
//
//   - Templates and sets are definitions: publishing (defining) again with
//     another body records the whole definition again
//     (DeviceTemplatePublished, DeviceSetDefined), and publishing a deleted
//     template or defining a deleted set brings it back. Deleting a template
//     that devices or sets still use is allowed: the devices keep their
//     values but cannot be registered or changed until the template is
//     published again, and the sets become broken and say why.
//   - Devices are things: a deleted device's ID is retired. Registering,
//     changing or re-registering a deleted device is refused (a conflict that
//     says to use a new ID), so a device ID names one device throughout the
//     history auditors read.
//   - PUT of a device with only new property values records
//     DevicePropertiesChanged carrying the complete new values (a
//     replacement, not a patch: a property left out is removed). A new name
//     or template records DeviceRegistered again with the whole device, so
//     the catalog keeps its fields and a reader of DeviceRegistered always
//     gets a complete device (projectors treat it as an upsert).
//   - Device keys: a device authenticates to the broker with a key that
//     the command handler draws when it registers the device (or when a
//     new key is issued: IssueKey, which replaces the old one). Only its
//     stored form, a hash, is recorded (DeviceKeyIssued) and kept in the
//     state (Device.KeyHash); the key itself never reaches the domain.
//   - Condition ops: eq and ne compare a value of the property's schema; lt,
//     le, gt and ge need a number property (numeric order) or a string
//     property (byte-wise lexical order, which orders ISO dates and
//     zero-padded codes as expected); contains needs a string property
//     (substring) or an object property (the object has the key). A device
//     without a value for a condition's property does not meet it, whatever
//     the op (ne included): "unknown" is never a match.
//
// Commands carry everything a decision needs: IDs, and for device and set
// commands the current state of the template they name (looked up by the
// command handler), so deciding stays pure. Event types carry JSON tags:
// they are the stored contract of ARCHITECTURE.md's catalog (camelCase),
// not an API shape.
//
// It is pure: standard library and package domain only; no I/O, no clock,
// no random IDs, no logging.
package device
