// Makes world-110m.svg, the land under the console's PoP map, from
// world-atlas's land-110m.json (Natural Earth 1:110m, public domain):
// topojson-client turns it into GeoJSON, d3-geo draws it in an
// equirectangular projection cut at the antimeridian, scaled so that
// x = longitude and y = -latitude in a -180 -90 360 180 view box (where
// the console places each PoP at (lon, -lat)).
//   npm install world-atlas@2.0.2 topojson-client@3.1.0 d3-geo@3.1.1
//   node make-world-svg.mjs node_modules/world-atlas/land-110m.json > world-110m.svg
import { readFileSync } from "node:fs";
import { feature } from "topojson-client";
import { geoEquirectangular, geoPath } from "d3-geo";

const topology = JSON.parse(readFileSync(process.argv[2], "utf8"));
const land = feature(topology, topology.objects.land);
const projection = geoEquirectangular().scale(180 / Math.PI).translate([0, 0]).precision(0.1);
const d = geoPath(projection).digits(1)(land);
process.stdout.write(
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="-180 -90 360 180">' +
    `<path fill="#dfe3ea" stroke="#b8bfcc" stroke-width="0.2" d="${d}"/></svg>\n`,
);
