package engine

// Version is pearld's version, set at build time with
// -ldflags "-X github.com/pearld/pearld/engine.Version=v1.2.3".
var Version = "dev"
