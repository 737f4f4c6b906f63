function idString(v) {
    if (v === null || v === undefined)
        return '';
    return String(v).trim();
}
/**
 * normalizeKey turns a KeySpec into the key the server uses: a channel sent
 * as the number 1 and as the string "1" are the same key, empty ids are
 * absent. It throws on a spec without a data type or device.
 */
export function normalizeKey(spec) {
    const dataType = spec.dataType.trim();
    const device = idString(spec.device);
    if (dataType === '')
        throw new TypeError('pearld: a subscription needs a dataType');
    if (device === '')
        throw new TypeError('pearld: a subscription needs a device');
    const channel = idString(spec.channel);
    const publisherId = idString(spec.publisherId);
    const out = { dataType, device, key: makeKey(dataType, device, channel, publisherId) };
    if (channel !== '' || publisherId !== '')
        out.channel = channel;
    if (publisherId !== '')
        out.publisherId = publisherId;
    return out;
}
/** makeKey builds `dataType:device[:channel[:publisherId]]` like the server. */
export function makeKey(dataType, device, channel, publisherId) {
    const ch = idString(channel);
    const pub = idString(publisherId);
    let key = `${dataType}:${idString(device)}`;
    if (ch !== '' || pub !== '')
        key += `:${ch}`;
    if (pub !== '')
        key += `:${pub}`;
    return key;
}
/**
 * parseKey splits a subscription key. Device ids may hold ':' only when no
 * channel follows (`device_health:fe80::1` is ambiguous); keys from the
 * server's stream_list use the form this function reads.
 */
export function parseKey(key) {
    const parts = key.split(':');
    if (parts.length < 2 || parts[0] === '' || parts[1] === '')
        return null;
    const [dataType, device, channel, publisherId] = parts;
    if (parts.length > 4)
        return null;
    const out = { dataType, device, key };
    if (channel !== undefined)
        out.channel = channel;
    if (publisherId !== undefined)
        out.publisherId = publisherId;
    return out;
}
