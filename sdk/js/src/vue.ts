/**
 * Vue 3 composables over the pearld client, with the names and return
 * shapes the dashboards of the replaced system use:
 *
 * ```ts
 * import { createPearld, useRealTimeData, usePublisherControlRT } from 'pearld-client/vue';
 * app.use(createPearld({ getToken: () => auth.getValidToken() })); // hub at this origin's /ws/realtime
 * const { data, isConnected, error, stats, refresh, subscriptionKey } = useRealTimeData('device_health', deviceId);
 * const { publishers, isStreaming, startPublishers, stopPublishers, connectionStatus } = usePublisherControlRT(deviceId, channelRef);
 * ```
 *
 * Every argument may be a plain value, a ref or a getter; when one
 * changes, the old key is released and the new one subscribed. An empty
 * channel subscribes nothing (a channel picker with no choice yet). All
 * components share one connection per hub URL.
 */
import {
  computed,
  hasInjectionContext,
  inject,
  onScopeDispose,
  ref,
  shallowRef,
  toValue,
  watch,
  type App,
  type ComputedRef,
  type InjectionKey,
  type MaybeRefOrGetter,
  type Ref,
  type ShallowRef,
} from 'vue';
import { PearldClient, type ClientOptions, type ClientStats, type ConnectionState, type Subscription, type Update } from './client.js';
import type { Publisher, PublisherStatusFields, PublisherStatusData } from './data.js';
import { errorText, type ControlAnswer } from './http.js';
import { canControl as tokenCanControl } from './jwt.js';
import { normalizeKey, type Id, type Key } from './keys.js';
import { defaultUrls, getClient } from './shared.js';

/** Arguments may be plain values, refs or getters (Vue's MaybeRefOrGetter). */
export type MaybeRef<T> = MaybeRefOrGetter<T>;

/** The key under which createPearld provides the client. */
export const PearldClientKey: InjectionKey<PearldClient> = Symbol('pearld-client');

/** Options of the composables' client: ClientOptions whose url defaults to this origin's /ws/realtime. */
export type PearldVueOptions = Partial<ClientOptions>;

let defaults: PearldVueOptions = {};

/**
 * configurePearld sets the options of the shared client that composables
 * use outside an app that installed createPearld (and in tests).
 */
export function configurePearld(options: PearldVueOptions): void {
  defaults = { ...options };
}

function resolveOptions(o: PearldVueOptions): ClientOptions {
  if (o.url) return { ...o, url: o.url };
  const d = defaultUrls();
  return { ...o, url: d.url, apiBase: o.apiBase ?? d.apiBase };
}

/** createPearld is a Vue plugin that provides one shared client to the app's composables. */
export function createPearld(options: PearldVueOptions = {}): { install(app: App): void; client(): PearldClient } {
  let client: PearldClient | null = null;
  const get = (): PearldClient => (client ??= getClient(resolveOptions(options)));
  return {
    install(app: App) {
      app.provide(PearldClientKey, get());
    },
    client: get,
  };
}

/** usePearldClient returns the provided client, or the shared one of configurePearld's options. */
export function usePearldClient(): PearldClient {
  const provided = hasInjectionContext() ? inject(PearldClientKey, null) : null;
  return provided ?? getClient(resolveOptions(defaults));
}

const descriptions: Record<ConnectionState, string> = {
  'connected-live': 'Real-time WebSocket (Live)',
  'connected-cached': 'Real-time WebSocket (Cached)',
  'fallback-http': 'HTTP Polling Fallback',
  disconnected: 'Disconnected',
};

/** What useRealTimeData returns. */
export interface RealTimeData<T> {
  /** The key's latest data, null until known. */
  data: ShallowRef<T | null>;
  /** True while the WebSocket is up. */
  isConnected: ComputedRef<boolean>;
  /** The subscription's error, or the connection's while disconnected. */
  error: ComputedRef<string | null>;
  stats: ShallowRef<ClientStats>;
  /** Asks for the latest state again. */
  refresh: () => Promise<void>;
  /** `dataType:device[:channel[:publisherId]]`, '' while incomplete. */
  subscriptionKey: ComputedRef<string>;
  lastUpdated: Ref<Date | null>;
  /** True while data is a snapshot of the latest state rather than a live change. */
  isCachedData: Ref<boolean>;
  /** False when the last reconnect could not replay what was missed. */
  isRecovered: Ref<boolean>;
  /** The state of this key's data. */
  connectionStatus: ComputedRef<ConnectionState>;
  /** The last update with its metadata (seq, timestamp, source). */
  update: ShallowRef<Update | null>;
  /** Alias of refresh, as the replaced composable had. */
  requestCachedData: () => Promise<void>;
}

/**
 * useRealTimeData subscribes to one key for the lifetime of the calling
 * component (or effect scope) and keeps `data` current: over the
 * WebSocket, over HTTP polling while it is down, and without gaps across
 * reconnects.
 */
export function useRealTimeData<T = unknown>(
  dataType: MaybeRef<string>,
  device: MaybeRef<Id | null | undefined>,
  channel?: MaybeRef<Id | null | undefined | ''>,
  publisherId?: MaybeRef<Id | null | undefined>,
): RealTimeData<T> {
  const client = usePearldClient();
  const data = shallowRef<T | null>(null) as ShallowRef<T | null>;
  const update = shallowRef<Update | null>(null);
  const lastUpdated = ref<Date | null>(null);
  const isCachedData = ref(false);
  const isRecovered = ref(true);
  const keyError = ref<string | null>(null);
  const state = ref<ConnectionState>(client.state);
  const keyState = ref<ConnectionState>(client.state);
  const stats = shallowRef<ClientStats>(client.stats());

  // A channel argument that is given but empty (a ref to a channel picker
  // with no choice yet) subscribes nothing, rather than the device-level key.
  const channelGiven = channel !== undefined;
  const key = computed<Key | null>(() => {
    const t = toValue(dataType);
    const d = toValue(device);
    const c = toValue(channel);
    if (!t || d === null || d === undefined || d === '') return null;
    if (channelGiven && (c === null || c === undefined || c === '')) return null;
    try {
      return normalizeKey({ dataType: t, device: d, channel: c, publisherId: toValue(publisherId) });
    } catch {
      return null;
    }
  });
  const subscriptionKey = computed(() => key.value?.key ?? '');

  let sub: Subscription | null = null;
  const apply = (u: Update): void => {
    update.value = u;
    data.value = u.data as T;
    lastUpdated.value = new Date(u.receivedAt);
    isCachedData.value = u.cached;
    isRecovered.value = u.recovered;
    keyError.value = null;
    keyState.value = sub ? sub.state : client.state;
  };
  watch(
    subscriptionKey,
    () => {
      sub?.unsubscribe();
      sub = null;
      data.value = null;
      update.value = null;
      lastUpdated.value = null;
      isCachedData.value = false;
      isRecovered.value = true;
      keyError.value = null;
      const k = key.value;
      if (!k) return;
      const spec = { dataType: k.dataType, device: k.device, channel: k.channel, publisherId: k.publisherId };
      const s = client.subscribe(spec, apply, (e) => (keyError.value = e.message));
      sub = s;
      if (s.latest) apply(s.latest);
      if (s.error) keyError.value = s.error.message;
      keyState.value = s.state;
    },
    { immediate: true },
  );

  client.connect(); // the connection state means something even before a key is complete
  const off = client.on('change', () => {
    state.value = client.state;
    keyState.value = sub ? sub.state : client.state;
    stats.value = client.stats();
  });
  onScopeDispose(() => {
    off();
    sub?.unsubscribe();
    sub = null;
  });

  const refresh = async (): Promise<void> => {
    await sub?.refresh();
  };
  return {
    data,
    isConnected: computed(() => state.value === 'connected-live'),
    error: computed(() => keyError.value ?? (state.value === 'disconnected' ? stats.value.lastError : null)),
    stats,
    refresh,
    subscriptionKey,
    lastUpdated,
    isCachedData,
    isRecovered,
    connectionStatus: computed(() => keyState.value),
    update,
    requestCachedData: refresh,
  };
}

/** A publisher as usePublisherControlRT lists it: name, type and status always set. */
export interface PublisherView {
  id: string;
  name: string;
  type: string;
  status: PublisherStatusFields;
}

export type StreamingState = 'stopped' | 'starting' | 'started' | 'stopping';

/** What usePublisherControlRT returns. */
export interface PublisherControlRT {
  publishers: ComputedRef<PublisherView[]>;
  /** True when every publisher of the channel is started (as the replaced composable defined it). */
  isStreaming: ComputedRef<boolean>;
  streamingState: ComputedRef<StreamingState>;
  /** Starts every publisher of the channel; false (and error set) when it failed. */
  startPublishers: () => Promise<boolean>;
  stopPublishers: () => Promise<boolean>;
  /** Starts or stops one publisher. */
  startPublisher: (publisherId: Id) => Promise<boolean>;
  stopPublisher: (publisherId: Id) => Promise<boolean>;
  connectionStatus: ComputedRef<ConnectionState>;
  connectionDescription: ComputedRef<string>;
  /** Whether the token may control this device (publisher_control or admin, and its devices claim). */
  canControl: ComputedRef<boolean>;
  loading: Ref<boolean>;
  error: Ref<string | null>;
  isControlling: Ref<boolean>;
  lastFetch: Ref<Date | null>;
  wsConnected: ComputedRef<boolean>;
  wsError: ComputedRef<string | null>;
  wsLastUpdated: Ref<Date | null>;
  httpFallbackEnabled: ComputedRef<boolean>;
  refresh: () => Promise<void>;
  /** Kept for compatibility: the streaming state is computed, there is nothing to update. */
  updateStreamingStatus: () => void;
  fetchPublisherStatus: () => Promise<void>;
  isPollingActive: ComputedRef<boolean>;
  /** Kept for compatibility: the client polls by itself while the WebSocket is down. */
  startPolling: () => void;
  stopPolling: () => void;
  restartPolling: () => Promise<void>;
  /** The last control answer. */
  lastControl: ShallowRef<ControlAnswer | null>;
}

/**
 * usePublisherControlRT shows a channel's publishers live and starts and
 * stops them through the REST control routes; the outcome arrives as
 * publisher_status updates within a second or so.
 */
export function usePublisherControlRT(device: MaybeRef<Id | null | undefined>, channel: MaybeRef<Id | null | undefined | ''>): PublisherControlRT {
  const client = usePearldClient();
  const rt = useRealTimeData<PublisherStatusData>('publisher_status', device, channel);
  const loading = ref(false);
  const controlError = ref<string | null>(null);
  const isControlling = ref(false);
  const lastControl = shallowRef<ControlAnswer | null>(null);

  const publishers = computed<PublisherView[]>(() => {
    const list = rt.data.value?.publishers;
    if (!Array.isArray(list)) return [];
    return list.filter((p): p is Publisher => !!p && typeof p === 'object').map((p) => ({
      id: String(p.id),
      name: p.name || `Publisher ${p.id}`,
      type: p.type || 'unknown',
      status: p.status ?? { is_configured: false, started: false, state: 'stopped' },
    }));
  });
  const streamingState = computed<StreamingState>(() => {
    const ps = publishers.value;
    if (ps.length === 0) return 'stopped';
    if (ps.some((p) => p.status.state === 'stopping')) return 'stopping';
    if (ps.some((p) => p.status.state === 'starting')) return 'starting';
    if (ps.every((p) => p.status.started)) return 'started';
    return 'stopped';
  });

  const error = ref<string | null>(null);
  watch([controlError, rt.error], ([c, e]) => (error.value = c ?? e), { immediate: true });

  const act = async (fn: (d: Id, c: Id) => Promise<ControlAnswer>): Promise<boolean> => {
    const d = toValue(device);
    const c = toValue(channel);
    if (d === null || d === undefined || d === '' || c === null || c === undefined || c === '' || isControlling.value) return false;
    isControlling.value = true;
    loading.value = true;
    try {
      lastControl.value = await fn(d, c);
      controlError.value = null;
      if (rt.connectionStatus.value === 'fallback-http') await rt.refresh();
      return true;
    } catch (err) {
      controlError.value = errorText(err);
      return false;
    } finally {
      isControlling.value = false;
      loading.value = false;
    }
  };

  const wsConnected = rt.isConnected;
  const httpFallbackEnabled = computed(() => rt.connectionStatus.value === 'fallback-http');
  const connectionStatus = rt.connectionStatus;
  const noop = (): void => {};
  return {
    publishers,
    isStreaming: computed(() => streamingState.value === 'started'),
    streamingState,
    startPublishers: () => act((d, c) => client.startPublishers(d, c)),
    stopPublishers: () => act((d, c) => client.stopPublishers(d, c)),
    startPublisher: (id) => act((d, c) => client.startPublisher(d, c, id)),
    stopPublisher: (id) => act((d, c) => client.stopPublisher(d, c, id)),
    connectionStatus,
    connectionDescription: computed(() => descriptions[connectionStatus.value]),
    canControl: computed(() => {
      void rt.stats.value; // re-evaluate when the client changes (a new token)
      const d = toValue(device);
      return d !== null && d !== undefined && d !== '' && tokenCanControl(client.claims, String(d));
    }),
    loading,
    error,
    isControlling,
    lastFetch: rt.lastUpdated,
    wsConnected,
    wsError: rt.error,
    wsLastUpdated: rt.lastUpdated,
    httpFallbackEnabled,
    refresh: rt.refresh,
    updateStreamingStatus: noop,
    fetchPublisherStatus: rt.refresh,
    isPollingActive: httpFallbackEnabled,
    startPolling: noop,
    stopPolling: noop,
    restartPolling: rt.refresh,
    lastControl,
  };
}
