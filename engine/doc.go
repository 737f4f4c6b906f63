// Package engine runs pearld's declarative pipelines: it defines the Event
// that flows through them, the Source, Processor and Sink contracts that
// components implement, the registry that maps type names to components,
// the TOML loader, and the runner that wires components with bounded
// queues, supervises them and exposes their metrics and status.
//
// # Lifecycle of a component
//
//  1. Factory: the registered Factory returns a pointer to a struct with
//     its defaults set. The struct's `toml` tags are its configuration
//     schema.
//  2. Decode: the loader decodes the component's table into the struct,
//     strictly; an unknown key is an error naming file, line and key.
//  3. Init(env), if implemented: validate, resolve devices, build clients,
//     mount HTTP handlers with env.Handle. No network: `pearld validate`
//     runs this step too. Components are initialised in topological order,
//     so a component's upstream is initialised before it. An error makes
//     the pipeline invalid and nothing of it runs.
//  4. Run: HTTP listeners are bound, then every Source's Run starts in its
//     own goroutine; each Processor and Sink gets one goroutine that reads
//     its bounded input queue. Queued batches are merged before a call, so
//     a busy component sees fewer, larger batches.
//  5. Stop: sources are cancelled first; once a component's inputs are
//     drained its Close(ctx), if implemented, is called, so sinks see every
//     event the sources emitted before the stop. ctx bounds Close.
//
// A source whose Run returns an error is restarted with exponential backoff
// and jitter; the rest of the pipeline keeps running and /status shows it.
//
// Batches are shared between the components downstream of a fan-out:
// components must not modify a batch or an Event's Data in place.
package engine
