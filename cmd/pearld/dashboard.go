package main

import (
	"net"
	"strconv"

	"github.com/pearld/pearld/cmd/pearld/internal/dashboard"
	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/sinks/websocket"
)

// mountDashboard serves the dashboard on the status listener. The page
// connects to the first WebSocket hub of the running pipelines (on the
// page's host), or to port 3446 when none runs.
func mountDashboard(e *engine.Engine, statusAddr string) error {
	port := 0
	for _, p := range e.Status(false).Pipelines {
		for _, c := range e.Pipeline(p.Name).Config().Components {
			if h, ok := c.Value.(*websocket.Hub); ok && port == 0 {
				port = listenPort(e, h.Listen)
			}
		}
	}
	h, err := dashboard.Handler(dashboard.Config{HubPort: port, Version: engine.Version})
	if err != nil {
		return err
	}
	for _, p := range dashboard.Patterns {
		if err := e.Listeners().Handle(statusAddr, p, h, "dashboard"); err != nil {
			return err
		}
	}
	return nil
}

// listenPort is the port a listen address was bound to (port 0 picks one).
func listenPort(e *engine.Engine, listen string) int {
	if a, ok := e.Listeners().Addr(listen).(*net.TCPAddr); ok && a != nil {
		return a.Port
	}
	_, p, err := net.SplitHostPort(listen)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
