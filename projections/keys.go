package projections

import "fmt"

// KeyRoot is the first segment of every key fleetjobs writes to Redis,
// unless it is given another root (tests do, to share one Redis; so can two
// deployments).
const KeyRoot = "fj"

// checkpointKey is the key, relative to a version's prefix, holding the
// position in $all up to which that version has applied events. No
// projector may use it for anything else.
const checkpointKey = "checkpoint"

// Prefix returns the key prefix of version of projection name:
// "{root}:{name}:{version}:".
func Prefix(root, name, version string) string { return root + ":" + name + ":" + version + ":" }

// ActiveKey returns the key that names the version of projection name that
// queries read: "{root}:{name}:active". A rebuild writes a new version
// beside the live one and then sets this key, which switches every reader
// at once.
func ActiveKey(root, name string) string { return root + ":" + name + ":active" }

// CheckpointKey returns the key holding the checkpoint of version of
// projection name, written in the same MULTI/EXEC as the changes it covers.
func CheckpointKey(root, name, version string) string {
	return Prefix(root, name, version) + checkpointKey
}

// checkName accepts what projection names and versions may be made of:
// they become segments of key names, so nothing that could be confused with
// the ':' separator or a Redis Cluster hash tag.
func checkName(what, s string) error {
	ok := len(s) > 0 && len(s) <= 32 && s[0] != '-'
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
	}
	if !ok {
		return fmt.Errorf("projection %s %q: want lowercase letters, digits and dashes, at most 32", what, s)
	}
	return nil
}
