package main

import "github.com/pearld/pearld/sdk"

func main() {
	sdk.Serve(Plugin())
}
