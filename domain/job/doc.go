// Package job is the Job aggregate: creating a job on a device set, starting,
// dispatching, recording device results, completing, failing and stopping
// it, with the product's job rules ("a stopped job cannot be restarted", ...)
// written as Decide and pinned by given/when/then tests beside them.
//
// It imports nothing of the project. The rules arrive with the jobs issue.
package job
