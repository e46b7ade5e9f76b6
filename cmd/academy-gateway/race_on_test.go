//go:build race

package main

// raceDetector is whether the race detector is on: its shadow memory makes RSS meaningless.
const raceDetector = true
