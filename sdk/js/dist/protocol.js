/**
 * The wire contract of pearld's WebSocket hub (PROTOCOL.md, "WebSocket
 * messages"), as TypeScript types. Server frames are typed loosely where the
 * protocol lets them grow: unknown fields are kept, unknown frame types are
 * ignored by the client.
 */
/** Close codes the hub uses. */
export const CloseCode = {
    Normal: 1000,
    GoingAway: 1001,
    Abnormal: 1006,
    PolicyViolation: 1008,
    TooBig: 1009,
    TryAgainLater: 1013,
};
/** 1008 reasons that mean the token was refused (PROTOCOL.md, "Authentication"). */
export const AuthCloseReasons = ['Authentication required', 'Insufficient permissions'];
