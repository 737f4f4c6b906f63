// Command pearl-sim serves a fleet of simulated Epiphan Pearl encoders
// (REST API v2.0) on consecutive ports, for trying pearld without hardware:
//
//	pearl-sim -n 5 -listen 127.0.0.1:8400 -password secret
//
// It prints one line per device, starting with the device's URL, then runs
// until SIGINT or SIGTERM. Publishers start, fail, reconnect and stop, CPU
// load and temperature drift; -faults adds transient failures and -reboots
// occasional reboots. The same -seed gives the same fleet. The devices are
// pearltest.Fleet, which the daemon's demo mode uses too.
package main
