// Package mqtt is the MQTT v5 device transport of the dispatcher
// (FLEETJOBS_DEVICES=mqtt), its embedded broker and a small device agent.
//
// Topics (ARCHITECTURE.md, "Dispatch"): the service publishes each delivery
// at QoS 1 on fleetjobs/devices/{deviceId}/jobs/{jobId} as
// {jobId, jobType, operations, deadline}; the job ID doubles as the operation
// ID, so a device drops a duplicate (deliveries are at least once) but still
// answers. The device answers on fleetjobs/devices/{deviceId}/jobs/{jobId}/result
// with {status: "succeeded"|"failed", error}.
//
// What it owns:
//   - Transport: a dispatch.Transport over github.com/eclipse/paho.golang
//     (autopaho reconnects). It reads the answers through a shared
//     subscription ($share/{group}/..., at QoS 0: AnswerQoS says why), so
//     that each answer reaches one of several service instances (one
//     dispatches, the others record the answers they get), and hands them to the
//     dispatcher in batches. A pool of publishers (Config.Publishers) sends
//     the deliveries of all concurrent Sends, each waiting for its PUBACK;
//     the connection's reads are buffered and its writes gathered into as
//     few system calls as the load allows (batchConn). A device answer
//     is untrusted input: a malformed or oversized payload, a topic whose IDs
//     are invalid or an unknown status is counted (Stats), logged with a rate
//     limit and dropped; it never stops the transport. With the embedded
//     broker, serve attaches the Transport to it instead (Broker.Attach): no
//     connection of its own, deliveries handed to the broker directly,
//     answers read from an in-process subscription (not shared), a busy
//     dispatcher holding back the answering devices.
//   - Broker: the embedded broker (github.com/mochi-mqtt/server/v2) used when
//     no FLEETJOBS_MQTT_URL is configured. It does not drop an answer because
//     the service reads slowly (serviceQueueHook holds the device back
//     instead); only a failing service connection loses one. It ends a
//     connection whose write waits DefaultWriteTimeout or that does not log
//     in within 10 s (guardedListener), so that no device holds a delivery
//     or the broker's shutdown; it bounds keep-alives to
//     DefaultMaxKeepAlive (keepAliveHook), so that a device gone without a
//     word does not keep its connection; and it refuses a device's will
//     message. The
//     service connects with a service credential; a device connects with username = its ID and password = its
//     device key, checked by DeviceKeys (which stores only hashes: HashKey,
//     NewKey), and may only subscribe to its own job topic and publish its
//     own results. Keys are checked when a device connects; Disconnect ends
//     the connection of a device whose key was replaced or which was deleted.
//   - Agent: a device (fleetjobs device --id ID --key KEY) that receives its
//     jobs, hands each to a handler, answers, and drops duplicate job IDs.
//     A refused key ends ConnectAgent at once (ErrRefused).
//
// It imports package dispatch (Delivery, Answer, Operation) and nothing else
// of the project: transports never import the domain, which is why the ID
// rule of domain.CheckID is repeated here (validID).
package mqtt
