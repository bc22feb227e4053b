// @ts-check
/** An error page (pages.py error_page): the header still works (session, inbox, log out). */
import { boot } from './app.js';

boot();
