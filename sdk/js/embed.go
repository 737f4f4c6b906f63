// Package js holds the browser client of pearld's real-time protocol
// (the npm package pearld-client: TypeScript sources in src/, the built ES
// modules and type declarations in dist/, committed) and embeds the built
// modules so that pearld can serve them to its dashboard without a build
// step. Rebuild dist with scripts/js.sh after changing src.
package js

import (
	"embed"
	"io/fs"
)

//go:embed dist/*.js
var dist embed.FS

// Dist returns the built ES modules of the client (index.js and the
// modules it imports, and vue.js), at the root of the file system.
func Dist() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		// "dist" is a constant, valid path of the embedded tree.
		panic("js: " + err.Error())
	}
	return sub
}
