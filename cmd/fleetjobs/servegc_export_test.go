package main

// ServeGC is serveGC, for the benchmarks of package main_test that run the
// service in the test process.
var ServeGC = serveGC
