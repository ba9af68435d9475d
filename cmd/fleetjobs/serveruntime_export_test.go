package main

// ServeRuntime is serveRuntime, for the benchmarks of package main_test
// that run the service in the test process.
var ServeRuntime = serveRuntime
