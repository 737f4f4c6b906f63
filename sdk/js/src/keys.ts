/** A value that names a channel or publisher: the wire takes both forms. */
export type Id = string | number;

/** What a subscription is for: one key of PROTOCOL.md. */
export interface KeySpec {
  dataType: string;
  device: Id;
  channel?: Id | null | undefined;
  publisherId?: Id | null | undefined;
}

/** A KeySpec with its ids as the strings the server uses. */
export interface Key {
  dataType: string;
  device: string;
  channel?: string;
  publisherId?: string;
  /** `dataType:device[:channel[:publisherId]]` */
  key: string;
}

function idString(v: Id | null | undefined): string {
  if (v === null || v === undefined) return '';
  return String(v).trim();
}

/**
 * normalizeKey turns a KeySpec into the key the server uses: a channel sent
 * as the number 1 and as the string "1" are the same key, empty ids are
 * absent. It throws on a spec without a data type or device.
 */
export function normalizeKey(spec: KeySpec): Key {
  const dataType = spec.dataType.trim();
  const device = idString(spec.device);
  if (dataType === '') throw new TypeError('pearld: a subscription needs a dataType');
  if (device === '') throw new TypeError('pearld: a subscription needs a device');
  const channel = idString(spec.channel);
  const publisherId = idString(spec.publisherId);
  const out: Key = { dataType, device, key: makeKey(dataType, device, channel, publisherId) };
  if (channel !== '' || publisherId !== '') out.channel = channel;
  if (publisherId !== '') out.publisherId = publisherId;
  return out;
}

/** makeKey builds `dataType:device[:channel[:publisherId]]` like the server. */
export function makeKey(dataType: string, device: Id, channel?: Id | null, publisherId?: Id | null): string {
  const ch = idString(channel);
  const pub = idString(publisherId);
  let key = `${dataType}:${idString(device)}`;
  if (ch !== '' || pub !== '') key += `:${ch}`;
  if (pub !== '') key += `:${pub}`;
  return key;
}

/**
 * parseKey splits a subscription key. Device ids may hold ':' only when no
 * channel follows (`device_health:fe80::1` is ambiguous); keys from the
 * server's stream_list use the form this function reads.
 */
export function parseKey(key: string): Key | null {
  const parts = key.split(':');
  if (parts.length < 2 || parts[0] === '' || parts[1] === '') return null;
  const [dataType, device, channel, publisherId] = parts as [string, string, string?, string?];
  if (parts.length > 4) return null;
  const out: Key = { dataType, device, key };
  if (channel !== undefined) out.channel = channel;
  if (publisherId !== undefined) out.publisherId = publisherId;
  return out;
}
