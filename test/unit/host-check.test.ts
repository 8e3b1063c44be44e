import { describe, expect, it } from 'vitest';
import {
  isLoopbackAuthority,
  unauthenticatedRequestProblem,
} from '../../src/transport/host-check.js';

describe('requests without API keys', () => {
  it('accept only loopback hosts, with or without a port', () => {
    for (const h of [
      '127.0.0.1:50051',
      'localhost',
      'LOCALHOST:1',
      '[::1]:50051',
      '127.9.9.9',
      'app.localhost:80',
    ])
      expect(isLoopbackAuthority(h)).toBe(true);
    for (const h of [
      undefined,
      '',
      'rebind.attacker.example',
      'rebind.attacker.example:50051',
      '10.0.0.1:50051',
      '[::2]:1',
      '127.0.0.1.nip.io',
      'localhost.attacker.example',
    ])
      expect(isLoopbackAuthority(h)).toBe(false);
  });

  it('refuse a rebound name, and a cross-origin page unless CORS lists it', () => {
    const none = () => false;
    expect(unauthenticatedRequestProblem('rebind.attacker.example:50051', undefined, none)).toMatch(
      /host "rebind/,
    );
    expect(unauthenticatedRequestProblem('127.0.0.1:50051', undefined, none)).toBeNull();
    expect(
      unauthenticatedRequestProblem('127.0.0.1:50051', 'http://localhost:3000', none),
    ).toBeNull();
    expect(unauthenticatedRequestProblem('127.0.0.1:50051', 'https://evil.example', none)).toMatch(
      /origin "https:\/\/evil.example"/,
    );
    expect(unauthenticatedRequestProblem('127.0.0.1:50051', 'null', none)).toMatch(/origin "null"/);
    expect(
      unauthenticatedRequestProblem(
        '127.0.0.1:50051',
        'https://app.example',
        (o) => o === 'https://app.example',
      ),
    ).toBeNull();
  });
});
