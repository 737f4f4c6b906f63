function base64UrlDecode(s) {
    let b64 = s.replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4 !== 0)
        b64 += '=';
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++)
        bytes[i] = bin.charCodeAt(i);
    return new TextDecoder().decode(bytes);
}
/**
 * decodeToken reads the payload of a JWT without verifying it: the server
 * verifies; a client only needs `exp` to refresh in time and `permissions`
 * to show what the user may do. It returns null for anything that is not a
 * JWT with a JSON object payload.
 */
export function decodeToken(token) {
    if (!token)
        return null;
    const parts = token.split('.');
    if (parts.length !== 3 || !parts[1])
        return null;
    try {
        const payload = JSON.parse(base64UrlDecode(parts[1]));
        if (payload === null || typeof payload !== 'object' || Array.isArray(payload))
            return null;
        return payload;
    }
    catch {
        return null;
    }
}
/** tokenExpiry returns when a token expires, in milliseconds since the epoch, or null when it does not say. */
export function tokenExpiry(token) {
    const exp = decodeToken(token)?.exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : null;
}
/** canRead mirrors the server: realtime_data, audio_streams or admin grants reading. */
export function canRead(claims) {
    const p = claims?.permissions;
    return !!(p && (p.realtime_data === true || p.audio_streams === true || p.admin === true));
}
/** canControl mirrors the server: publisher_control or admin grants control. */
export function canControl(claims, device) {
    const p = claims?.permissions;
    if (!p || (p.publisher_control !== true && p.admin !== true))
        return false;
    return device === undefined || allowsDevice(claims, device);
}
/**
 * allowsDevice mirrors the server's `devices` claim check: without the
 * claim every device is allowed; patterns use Go's path.Match syntax
 * (`*`, `?`, `[...]`; `*` does not cross `/`).
 */
export function allowsDevice(claims, device) {
    const list = claims?.devices;
    if (!Array.isArray(list))
        return true;
    return list.some((p) => typeof p === 'string' && (p === device || globMatch(p, device)));
}
/** globMatch implements the subset of path.Match that device patterns use. */
export function globMatch(pattern, name) {
    let re = '^';
    for (let i = 0; i < pattern.length; i++) {
        const c = pattern[i];
        if (c === '*')
            re += '[^/]*';
        else if (c === '?')
            re += '[^/]';
        else if (c === '[') {
            const end = pattern.indexOf(']', i + 1);
            if (end < 0)
                return false;
            let cls = pattern.slice(i + 1, end);
            if (cls.startsWith('^'))
                cls = '^' + cls.slice(1).replace(/[\\\]]/g, '\\$&');
            else
                cls = cls.replace(/[\\\]^]/g, '\\$&');
            re += `[${cls}]`;
            i = end;
        }
        else if (c === '\\' && i + 1 < pattern.length) {
            re += pattern[++i].replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
        }
        else
            re += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    }
    try {
        return new RegExp(re + '$').test(name);
    }
    catch {
        return false;
    }
}
