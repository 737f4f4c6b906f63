/**
 * The data of the shipped data types (PROTOCOL.md, "Event data"), for
 * typing `Update.data`. The server may add fields; the client passes them
 * through.
 */
export {};
