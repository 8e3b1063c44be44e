/** Reads one request header, case-insensitively, from whichever transport carried the call. */
export type HeaderReader = (name: string) => string | undefined;
