/**
 * The data of the shipped data types (PROTOCOL.md, "Event data"), for
 * typing `Update.data`. The server may add fields; the client passes them
 * through.
 */

export interface PublisherStatusFields {
  is_configured: boolean;
  started: boolean;
  /** `stopped`, `starting`, `started`, `stopping`, `listening`, `error`, ... */
  state: string;
  description?: string;
}

export interface Publisher {
  id: string;
  name?: string;
  type?: string;
  status?: PublisherStatusFields;
}

export interface PublisherChange {
  publisher_id: string;
  previous: PublisherStatusFields | null;
  current: PublisherStatusFields | null;
  changed_fields: string[];
}

/** `publisher_status` data: per device and channel. */
export interface PublisherStatusData {
  publishers: Publisher[];
  changes?: PublisherChange[];
  device_id: string;
  device_ip?: string;
  channel: string;
  fetched_at?: string;
}

/** `device_health` data: per device. */
export interface DeviceHealthData {
  status: 'online' | 'offline' | 'auth_failed' | 'degraded' | string;
  error_message?: string;
  error_count?: number;
  last_seen?: string | null;
  device_id: string;
  device_ip?: string;
  device_name?: string;
  system?: {
    cpuload: number;
    cpuload_high: boolean;
    cputemp: number;
    cputemp_threshold: number;
    uptime: number;
  };
  firmware?: { version?: string; revision?: string; product_id?: number; product_name?: string };
}

export interface PublisherQuality {
  id: string;
  name?: string;
  type: string;
  state: string;
  started: boolean;
  send_rate_mbps?: number;
  rtt_ms?: number;
  loss_ratio?: number;
  drop_ratio?: number;
  retransmit_ratio?: number;
}

/** `stream_quality` data (the stream_quality plugin): per device and channel. */
export interface StreamQualityData {
  device_id: string;
  device_ip?: string;
  channel: string;
  encoder?: {
    codec?: string;
    resolution?: string;
    framerate?: number;
    video_bitrate_kbps?: number;
    audio_codec?: string;
    audio_bitrate_kbps?: number;
    audio_channels?: number;
  };
  publishers: PublisherQuality[];
  streaming: boolean;
  fetched_at?: string;
}
