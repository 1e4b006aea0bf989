// App-wide state as signals: where we are (path + query) and who is signed in.

import { signal } from '@preact/signals';
import type { User } from './api';

/// The current location (pathname + search); the router renders from it.
export const route = signal(location.pathname + location.search);

/// The signed-in user: undefined until known, null when signed out.
export const currentUser = signal<User | null | undefined>(undefined);
