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
import { type App, type ComputedRef, type InjectionKey, type MaybeRefOrGetter, type Ref, type ShallowRef } from 'vue';
import { PearldClient, type ClientOptions, type ClientStats, type ConnectionState, type Update } from './client.js';
import type { PublisherStatusFields } from './data.js';
import { type ControlAnswer } from './http.js';
import { type Id } from './keys.js';
/** Arguments may be plain values, refs or getters (Vue's MaybeRefOrGetter). */
export type MaybeRef<T> = MaybeRefOrGetter<T>;
/** The key under which createPearld provides the client. */
export declare const PearldClientKey: InjectionKey<PearldClient>;
/** Options of the composables' client: ClientOptions whose url defaults to this origin's /ws/realtime. */
export type PearldVueOptions = Partial<ClientOptions>;
/**
 * configurePearld sets the options of the shared client that composables
 * use outside an app that installed createPearld (and in tests).
 */
export declare function configurePearld(options: PearldVueOptions): void;
/** createPearld is a Vue plugin that provides one shared client to the app's composables. */
export declare function createPearld(options?: PearldVueOptions): {
    install(app: App): void;
    client(): PearldClient;
};
/** usePearldClient returns the provided client, or the shared one of configurePearld's options. */
export declare function usePearldClient(): PearldClient;
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
export declare function useRealTimeData<T = unknown>(dataType: MaybeRef<string>, device: MaybeRef<Id | null | undefined>, channel?: MaybeRef<Id | null | undefined | ''>, publisherId?: MaybeRef<Id | null | undefined>): RealTimeData<T>;
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
export declare function usePublisherControlRT(device: MaybeRef<Id | null | undefined>, channel: MaybeRef<Id | null | undefined | ''>): PublisherControlRT;
