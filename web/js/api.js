// @ts-check
/**
 * The HTTP API: JSON in and out, errors as {@link ApiError}.
 */

/** @typedef {{id: number, username: string, display_name: string, avatar_url: string, created_at: string}} Me */
/** @typedef {{slug: string, url: string, title: string, created_by: {id: number, display_name: string}, created_at: string, participant_count: number}} Meeting */

/** An error answer from the API (or the network). */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0 when the network failed)
   * @param {string} code machine-readable code
   * @param {string} message human-readable explanation
   */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 */
async function request(method, path, body) {
  /** @type {RequestInit} */
  const init = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.headers = { 'content-type': 'application/json' };
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection.');
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = data?.error ?? {};
    throw new ApiError(response.status, error.code ?? 'unknown', error.message ?? `Request failed (${response.status})`);
  }
  return data;
}

export const api = {
  /** @returns {Promise<Me|null>} the logged-in user, or null */
  async me() {
    try {
      return await request('GET', '/api/me');
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return null;
      throw e;
    }
  },
  /** @param {{username: string, display_name: string, password: string}} fields @returns {Promise<Me>} */
  register: (fields) => request('POST', '/api/auth/register', fields),
  /** @param {{username: string, password: string}} fields @returns {Promise<Me>} */
  login: (fields) => request('POST', '/api/auth/login', fields),
  logout: () => request('POST', '/api/auth/logout', {}),
  /** @param {string} display_name @returns {Promise<Me>} */
  rename: (display_name) => request('PATCH', '/api/me', { display_name }),
  /** TURN servers with short-lived credentials (empty without TURN).
   * @returns {Promise<{ice_servers: RTCIceServer[], expires_at: number}>} */
  iceServers: () => request('GET', '/api/ice-servers'),
  /** @param {string} title @returns {Promise<Meeting>} */
  createMeeting: (title) => request('POST', '/api/meetings', title ? { title } : {}),
  /** @param {string} slug @returns {Promise<Meeting>} */
  meeting: (slug) => request('GET', `/api/meetings/${encodeURIComponent(slug)}`),
  /** @returns {Promise<{meetings: Meeting[]}>} */
  meetings: () => request('GET', '/api/meetings'),
  /** @param {string} slug @param {number} [before] */
  history: (slug, before) =>
    request('GET', `/api/meetings/${encodeURIComponent(slug)}/messages?limit=50${before ? `&before=${before}` : ''}`),

  /**
   * Uploads an avatar with progress (fetch cannot report upload progress).
   * @param {Blob} blob
   * @param {(fraction: number) => void} onProgress
   * @returns {Promise<Me>}
   */
  uploadAvatar(blob, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('PUT', '/api/me/avatar');
      xhr.setRequestHeader('content-type', blob.type || 'application/octet-stream');
      xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
      xhr.onerror = () => reject(new ApiError(0, 'network', 'The upload failed. Check your connection.'));
      xhr.onload = () => {
        let data = null;
        try { data = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
        if (xhr.status >= 200 && xhr.status < 300) resolve(data);
        else reject(new ApiError(xhr.status, data?.error?.code ?? 'unknown', data?.error?.message ?? 'The upload failed.'));
      };
      xhr.send(blob);
    });
  },
};

/**
 * Shrinks an image in the browser before upload: at most 512 px on the
 * longer side, WebP (or JPEG where WebP encoding is missing).
 * @param {File} file
 * @returns {Promise<Blob>}
 */
export async function compressImage(file) {
  const bitmap = await createImageBitmap(file).catch(() => null);
  if (!bitmap) return file; // Let the server decide (it resizes too).
  const scale = Math.min(1, 512 / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement('canvas');
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  const ctx = canvas.getContext('2d');
  if (!ctx) return file;
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  /** @param {string} type */
  const encode = (type) => new Promise((resolve) => canvas.toBlob(resolve, type, 0.85));
  const webp = /** @type {Blob|null} */ (await encode('image/webp'));
  if (webp && webp.type === 'image/webp') return webp;
  return /** @type {Blob|null} */ (await encode('image/jpeg')) ?? file;
}
