package device

// Schema is the type of a setting's, property's or command's value.
type Schema string

// The schemas a Capability may have.
const (
	SchemaNumber  Schema = "number"  // any JSON number
	SchemaString  Schema = "string"  // a JSON string
	SchemaBoolean Schema = "boolean" // true or false
	SchemaObject  Schema = "object"  // a JSON object
)

// Valid reports whether s is one of the four schemas.
func (s Schema) Valid() bool {
	switch s {
	case SchemaNumber, SchemaString, SchemaBoolean, SchemaObject:
		return true
	}
	return false
}

// Capability is one setting, property or command a template declares.
type Capability struct {
	Name   string `json:"name"`
	Schema Schema `json:"schema"`
}

// Op is a device set condition's comparison.
type Op string

// The ops a Condition may use (see the package documentation for which
// schemas each accepts).
const (
	OpEq       Op = "eq"
	OpNe       Op = "ne"
	OpLt       Op = "lt"
	OpLe       Op = "le"
	OpGt       Op = "gt"
	OpGe       Op = "ge"
	OpContains Op = "contains"
)

// Ops lists every op, in the order error messages name them.
func Ops() []Op { return []Op{OpEq, OpNe, OpLt, OpLe, OpGt, OpGe, OpContains} }

// Condition is one filter of a device set: the device's value of Property
// compared with Value by Op.
type Condition struct {
	Property string `json:"property"`
	Op       Op     `json:"op"`
	Value    any    `json:"value"`
}

// Command is the closed set of commands of this package.
//
//sumtype:decl
type Command interface{ isCommand() }

// TemplateCommand is a command on a Template.
//
//sumtype:decl
type TemplateCommand interface {
	Command
	isTemplateCommand()
}

// DeviceCommand is a command on a Device.
//
//sumtype:decl
type DeviceCommand interface {
	Command
	isDeviceCommand()
}

// SetCommand is a command on a Set.
//
//sumtype:decl
type SetCommand interface {
	Command
	isSetCommand()
}

// PublishTemplate publishes a template, or a new version of it.
type PublishTemplate struct {
	TemplateID string
	Name       string
	Settings   []Capability
	Properties []Capability
	Commands   []Capability
}

// DeleteTemplate deletes a template.
type DeleteTemplate struct {
	TemplateID string
}

// Register registers a device, or changes its name, template or property
// values (PUT semantics: the command is the whole device).
type Register struct {
	DeviceID   string
	Name       string
	TemplateID string
	// Properties are the device's property values: JSON values as
	// encoding/json decodes them into an any (float64 or json.Number,
	// string, bool, map[string]any); Go integers are accepted too.
	Properties map[string]any
	// Template is the current state of the template TemplateID names (the
	// zero Template if it was never published), looked up by the handler.
	Template Template
	// KeyHash is the stored form of a device key the handler drew for the
	// device (the key itself never reaches the domain). It is recorded
	// (DeviceKeyIssued, with DeviceRegistered) only when the command
	// registers a new device; empty records no key.
	KeyHash string
}

// IssueKey gives a device a new key, replacing its current one (a lost or
// leaked key).
type IssueKey struct {
	DeviceID string
	// KeyHash is the stored form of the new key, drawn by the handler.
	KeyHash string
}

// Delete deletes a device.
type Delete struct {
	DeviceID string
}

// DefineSet defines a device set, or redefines it (PUT semantics).
type DefineSet struct {
	SetID      string
	Name       string
	TemplateID string
	Conditions []Condition
	// Template is the current state of the template TemplateID names,
	// looked up by the handler.
	Template Template
}

// DeleteSet deletes a device set.
type DeleteSet struct {
	SetID string
}

func (PublishTemplate) isCommand() {}
func (DeleteTemplate) isCommand()  {}
func (Register) isCommand()        {}
func (IssueKey) isCommand()        {}
func (Delete) isCommand()          {}
func (DefineSet) isCommand()       {}
func (DeleteSet) isCommand()       {}

func (PublishTemplate) isTemplateCommand() {}
func (DeleteTemplate) isTemplateCommand()  {}
func (Register) isDeviceCommand()          {}
func (IssueKey) isDeviceCommand()          {}
func (Delete) isDeviceCommand()            {}
func (DefineSet) isSetCommand()            {}
func (DeleteSet) isSetCommand()            {}

// Event is the closed set of events of this package: the device part of the
// event catalog. Projectors switch over it.
//
//sumtype:decl
type Event interface{ isEvent() }

// TemplateEvent is an event of a template-{id} stream.
//
//sumtype:decl
type TemplateEvent interface {
	Event
	isTemplateEvent()
}

// DeviceEvent is an event of a device-{id} stream.
//
//sumtype:decl
type DeviceEvent interface {
	Event
	isDeviceEvent()
}

// SetEvent is an event of a deviceset-{id} stream.
//
//sumtype:decl
type SetEvent interface {
	Event
	isSetEvent()
}

// TemplatePublished is the catalog's DeviceTemplatePublished: the whole
// template, recorded again on every change.
type TemplatePublished struct {
	TemplateID string       `json:"templateId"`
	Name       string       `json:"name"`
	Settings   []Capability `json:"settings"`
	Properties []Capability `json:"properties"`
	Commands   []Capability `json:"commands"`
}

// TemplateDeleted is the catalog's DeviceTemplateDeleted.
type TemplateDeleted struct {
	TemplateID string `json:"templateId"`
}

// Registered is the catalog's DeviceRegistered: the whole device, recorded
// when it is registered and again when its name or template changes.
type Registered struct {
	DeviceID   string         `json:"deviceId"`
	Name       string         `json:"name"`
	TemplateID string         `json:"templateId"`
	Properties map[string]any `json:"properties"`
}

// PropertiesChanged is the catalog's DevicePropertiesChanged: the device's
// complete new property values (a replacement, not a patch).
type PropertiesChanged struct {
	DeviceID   string         `json:"deviceId"`
	Properties map[string]any `json:"properties"`
}

// KeyIssued is the catalog's DeviceKeyIssued: the device's key is now the
// one whose stored form is KeyHash ("sha256:" and the hex SHA-256 of the
// key); any earlier key stops working. It is recorded with DeviceRegistered
// when a device is registered, and alone when a new key is issued. The key
// itself is never recorded: it is shown once, in the answer of the command
// that drew it.
type KeyIssued struct {
	DeviceID string `json:"deviceId"`
	KeyHash  string `json:"keyHash"`
}

// Deleted is the catalog's DeviceDeleted.
type Deleted struct {
	DeviceID string `json:"deviceId"`
}

// SetDefined is the catalog's DeviceSetDefined: the whole set definition,
// recorded again on every change.
type SetDefined struct {
	SetID      string      `json:"setId"`
	Name       string      `json:"name"`
	TemplateID string      `json:"templateId"`
	Conditions []Condition `json:"conditions"`
}

// SetDeleted is the catalog's DeviceSetDeleted.
type SetDeleted struct {
	SetID string `json:"setId"`
}

func (TemplatePublished) isEvent() {}
func (TemplateDeleted) isEvent()   {}
func (Registered) isEvent()        {}
func (PropertiesChanged) isEvent() {}
func (KeyIssued) isEvent()         {}
func (Deleted) isEvent()           {}
func (SetDefined) isEvent()        {}
func (SetDeleted) isEvent()        {}

func (TemplatePublished) isTemplateEvent() {}
func (TemplateDeleted) isTemplateEvent()   {}
func (Registered) isDeviceEvent()          {}
func (PropertiesChanged) isDeviceEvent()   {}
func (KeyIssued) isDeviceEvent()           {}
func (Deleted) isDeviceEvent()             {}
func (SetDefined) isSetEvent()             {}
func (SetDeleted) isSetEvent()             {}
